"""A Vulkan device made only so that a runtime without XR_MND_headless grants a session (XR_KHR_vulkan_enable2).

Why Vulkan: it is the one graphics API every desktop runtime takes (SteamVR on Windows and Linux, Meta Quest Link,
Windows Mixed Reality, Monado), and the Vulkan loader ships with every GPU driver, so vrcap needs no graphics
package: ctypes calls the loader directly. vrcap never renders; the device exists for ``xrCreateSession`` and is
destroyed after the session. The runtime creates the instance and the device itself (enable2's
``xrCreateVulkanInstanceKHR`` / ``xrCreateVulkanDeviceKHR``), adding whatever extensions it needs, so the structs
below carry nothing but the application name and one graphics queue.

pyopenxr declares the Vulkan create-info structs as opaque; the layouts here follow the Vulkan 1.0 headers.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

ENABLE2 = "XR_KHR_vulkan_enable2"
QUEUE_GRAPHICS_BIT = 0x1
_ST_APPLICATION_INFO, _ST_INSTANCE_CREATE_INFO, _ST_DEVICE_QUEUE_CREATE_INFO, _ST_DEVICE_CREATE_INFO = (
    0,
    1,
    2,
    3,
)
VK_SUCCESS = 0


class VkApplicationInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int),
        ("pNext", ctypes.c_void_p),
        ("pApplicationName", ctypes.c_char_p),
        ("applicationVersion", ctypes.c_uint32),
        ("pEngineName", ctypes.c_char_p),
        ("engineVersion", ctypes.c_uint32),
        ("apiVersion", ctypes.c_uint32),
    ]


class VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("pApplicationInfo", ctypes.POINTER(VkApplicationInfo)),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
    ]


class VkDeviceQueueCreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("queueFamilyIndex", ctypes.c_uint32),
        ("queueCount", ctypes.c_uint32),
        ("pQueuePriorities", ctypes.POINTER(ctypes.c_float)),
    ]


class VkDeviceCreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("queueCreateInfoCount", ctypes.c_uint32),
        ("pQueueCreateInfos", ctypes.POINTER(VkDeviceQueueCreateInfo)),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
        ("pEnabledFeatures", ctypes.c_void_p),
    ]


class VkQueueFamilyProperties(ctypes.Structure):
    _fields_ = [
        ("queueFlags", ctypes.c_uint32),
        ("queueCount", ctypes.c_uint32),
        ("timestampValidBits", ctypes.c_uint32),
        ("minImageTransferGranularity", ctypes.c_uint32 * 3),
    ]


def vk_api_version(major: int, minor: int) -> int:
    return (major << 22) | (minor << 12)


def loader_name() -> str:
    return "vulkan-1.dll" if sys.platform == "win32" else "libvulkan.so.1"


class VulkanBinding:
    """Instance, physical device, device and queue family for ``XrGraphicsBindingVulkan2KHR``; ``close()`` frees."""

    def __init__(self, xr: Any, instance: Any, system: Any, app_name: str) -> None:
        self.xr = xr
        try:
            self._vk = ctypes.CDLL(loader_name())
        except OSError as exc:
            raise OSError(
                f"the Vulkan loader ({loader_name()}) is missing: install your GPU driver's Vulkan support "
                "(Debian/Ubuntu: libvulkan1 and mesa-vulkan-drivers)"
            ) from exc
        self.vk_instance: Any = None
        self.vk_device: Any = None
        self._keep: list[Any] = []  # ctypes objects the runtime may still point at until the session exists
        self._make(instance, system, app_name)

    def _make(self, instance: Any, system: Any, app_name: str) -> None:
        xr, vk = self.xr, self._vk
        requirements = xr.GraphicsRequirementsVulkan2KHR()
        fn = ctypes.cast(
            xr.get_instance_proc_addr(instance, "xrGetVulkanGraphicsRequirements2KHR"),
            xr.PFN_xrGetVulkanGraphicsRequirements2KHR,
        )
        result = xr.check_result(fn(instance, system, ctypes.byref(requirements)))
        if result.is_exception():  # the spec requires this call before xrCreateSession
            raise result
        minimum = int(requirements.min_api_version_supported)
        major, minor = max((1, 1), ((minimum >> 48) & 0xFFFF, (minimum >> 32) & 0xFFFF))
        inst_fields = dict(xr.VulkanInstanceCreateInfoKHR._fields_)  # pyopenxr's own (opaque) Vulkan types
        dev_fields = dict(xr.VulkanDeviceCreateInfoKHR._fields_)
        get_proc = inst_fields["pfn_get_instance_proc_addr"](("vkGetInstanceProcAddr", vk))
        app = VkApplicationInfo(
            _ST_APPLICATION_INFO, None, app_name.encode(), 1, b"vrcap", 1, vk_api_version(major, minor)
        )
        create = VkInstanceCreateInfo(
            _ST_INSTANCE_CREATE_INFO, None, 0, ctypes.pointer(app), 0, None, 0, None
        )
        self._keep += [app, create, get_proc]
        info = xr.VulkanInstanceCreateInfoKHR(
            system_id=system,
            pfn_get_instance_proc_addr=get_proc,
            vulkan_create_info=ctypes.cast(ctypes.pointer(create), inst_fields["vulkan_create_info"]),
        )
        self.vk_instance, vk_result = xr.create_vulkan_instance_khr(instance, info)
        _check_vk("vkCreateInstance", vk_result)
        self.physical_device = xr.get_vulkan_graphics_device2_khr(
            instance, xr.VulkanGraphicsDeviceGetInfoKHR(system_id=system, vulkan_instance=self.vk_instance)
        )
        self.queue_family = self._graphics_queue_family()
        priority = (ctypes.c_float * 1)(1.0)
        queue = VkDeviceQueueCreateInfo(_ST_DEVICE_QUEUE_CREATE_INFO, None, 0, self.queue_family, 1, priority)
        dev_create = VkDeviceCreateInfo(
            _ST_DEVICE_CREATE_INFO, None, 0, 1, ctypes.pointer(queue), 0, None, 0, None, None
        )
        self._keep += [priority, queue, dev_create]
        dev_info = xr.VulkanDeviceCreateInfoKHR(
            system_id=system,
            pfn_get_instance_proc_addr=get_proc,
            vulkan_physical_device=self.physical_device,
            vulkan_create_info=ctypes.cast(ctypes.pointer(dev_create), dev_fields["vulkan_create_info"]),
        )
        self.vk_device, vk_result = xr.create_vulkan_device_khr(instance, dev_info)
        _check_vk("vkCreateDevice", vk_result)
        self.binding = xr.GraphicsBindingVulkan2KHR(
            instance=self.vk_instance,
            physical_device=self.physical_device,
            device=self.vk_device,
            queue_family_index=self.queue_family,
            queue_index=0,
        )

    def _graphics_queue_family(self) -> int:
        fn = self._vk.vkGetPhysicalDeviceQueueFamilyProperties
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
        device = ctypes.cast(self.physical_device, ctypes.c_void_p)
        count = ctypes.c_uint32(0)
        fn(device, ctypes.byref(count), None)
        families = (VkQueueFamilyProperties * count.value)()
        fn(device, ctypes.byref(count), families)
        for index, family in enumerate(families):
            if family.queueFlags & QUEUE_GRAPHICS_BIT and family.queueCount > 0:
                return index
        raise OSError("the headset's Vulkan device has no graphics queue")

    def close(self) -> None:
        """Destroy the device and instance; only after the OpenXR session that used them is destroyed."""
        vk = self._vk
        if self.vk_device:
            vk.vkDestroyDevice.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            vk.vkDestroyDevice(ctypes.cast(self.vk_device, ctypes.c_void_p), None)
            self.vk_device = None
        if self.vk_instance:
            vk.vkDestroyInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            vk.vkDestroyInstance(ctypes.cast(self.vk_instance, ctypes.c_void_p), None)
            self.vk_instance = None
        self._keep.clear()


def _check_vk(call: str, result: Any) -> None:
    value = int(getattr(result, "value", result))
    if value != VK_SUCCESS:
        raise OSError(f"{call} failed inside the OpenXR runtime (VkResult {value})")
