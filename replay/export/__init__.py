"""`vrcap export`: sessions into the formats other tools read — MCAP (Foxglove), XDF (LSL/LabRecorder), LeRobot v3.0.

Every exporter streams a session packet by packet (constant memory), writes into a temporary path beside the
output and renames it into place only when the session was read to its end, so a session that cannot be
exported leaves nothing half-written behind. The mappings are tabled in docs/INTEROP.md.
"""
