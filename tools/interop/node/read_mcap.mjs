// Reads an MCAP file with Node's @mcap/core (indexed reader: summary, chunk indexes, lz4 via @mcap/support)
// and decodes every message with protobufjs from the schema stored in the file (JSON channels with JSON.parse).
// Prints one JSON line per message, in log-time order: the interop tests compare each with the session.
// Usage: node read_mcap.mjs FILE.mcap
import { open } from "node:fs/promises";
import { McapIndexedReader } from "@mcap/core";
import { loadDecompressHandlers, protobufFromBinaryDescriptor } from "@mcap/support";

const handle = await open(process.argv[2], "r");
const size = (await handle.stat()).size;
const readable = {
  size: async () => BigInt(size),
  read: async (offset, length) => {
    const buffer = new Uint8Array(Number(length));
    await handle.read(buffer, 0, Number(length), Number(offset));
    return buffer;
  },
};
const reader = await McapIndexedReader.Initialize({ readable, decompressHandlers: await loadDecompressHandlers() });
const decoders = new Map();
for (const [id, channel] of reader.channelsById) {
  const schema = reader.schemasById.get(channel.schemaId);
  if (channel.messageEncoding === "protobuf") {
    const type = protobufFromBinaryDescriptor(schema.data).lookupType(schema.name);
    decoders.set(id, (data) =>
      type.toObject(type.decode(data), { longs: String, bytes: String, defaults: true }));
  } else if (channel.messageEncoding === "json") {
    decoders.set(id, (data) => JSON.parse(new TextDecoder().decode(data)));
  }
}
const out = [];
out.push(JSON.stringify({
  summary: true,
  chunks: reader.chunkIndexes.map((c) => c.compression),
  messageCount: String(reader.statistics?.messageCount ?? -1),
  channels: [...reader.channelsById.values()].map((c) => ({ topic: c.topic, schema: reader.schemasById.get(c.schemaId)?.name })),
}));
for await (const message of reader.readMessages()) {
  const channel = reader.channelsById.get(message.channelId);
  out.push(JSON.stringify({
    topic: channel.topic, logTime: String(message.logTime), publishTime: String(message.publishTime),
    sequence: message.sequence, message: decoders.get(message.channelId)(message.data),
  }));
  if (out.length >= 1000) { process.stdout.write(out.join("\n") + "\n"); out.length = 0; }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
await handle.close();
