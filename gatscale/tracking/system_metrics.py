"""CPU, memory and (through pynvml, when installed) GPU usage, sampled by a small thread (`system_metrics: true`).

MLflow has its own SystemMetricsMonitor, but it sends straight to the server (samples are lost while the server
is down) and needs the run id up front; this sampler feeds the tracker's buffer instead, under MLflow's metric
names (`system/...`), so the MLflow UI shows them in its System metrics tab.
"""
from __future__ import annotations

import logging
import threading

import psutil

log = logging.getLogger(__name__)


def _gpu_handles():
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # not installed, no driver, no GPU
        return None, []


def sample(nvml=None, gpus=()) -> dict[str, float]:
    memory = psutil.virtual_memory()
    metrics = {
        "system/cpu_utilization_percentage": psutil.cpu_percent(),
        "system/system_memory_usage_megabytes": (memory.total - memory.available) / 2**20,
        "system/system_memory_usage_percentage": memory.percent,
    }
    for i, handle in enumerate(gpus):
        try:
            used = nvml.nvmlDeviceGetMemoryInfo(handle)
            metrics[f"system/gpu_{i}_utilization_percentage"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            metrics[f"system/gpu_{i}_memory_usage_megabytes"] = used.used / 2**20
            metrics[f"system/gpu_{i}_memory_usage_percentage"] = 100.0 * used.used / used.total
            metrics[f"system/gpu_{i}_power_usage_watts"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except Exception as e:
            log.debug("system metrics: GPU %d not readable: %s", i, e)
    return metrics


class SystemMetricsSampler(threading.Thread):
    """Calls `log(metrics)` every `interval` seconds until `stop()`."""

    def __init__(self, log_fn, interval: float = 10.0):
        super().__init__(name="gatscale-system-metrics", daemon=True)
        self.log_fn, self.interval = log_fn, interval
        self._stop_event = threading.Event()

    def run(self):
        nvml, gpus = _gpu_handles()
        psutil.cpu_percent()  # the first reading is meaningless (usage since the last call)
        while not self._stop_event.wait(self.interval):
            try:
                self.log_fn(sample(nvml, gpus))
            except Exception as e:
                log.warning("system metrics: sampling failed: %s", e)

    def stop(self):
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
