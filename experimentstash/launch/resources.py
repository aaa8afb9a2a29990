"""What each run used: CPU time, peak memory and processes of the run's whole process tree, and GPU memory.

One sampler thread per launcher process watches every running run: about once a second it reads
`/proc/<pid>/stat` of every process once and gives each process to the run it belongs to: the run whose tool
started its session (each tool starts a session of its own, so its pid is the session id), or whose process it
descends from (a process that called setsid), or that it was seen in before (such a process, orphaned). The thread
starts with the first watched run and ends when none is left.

    watch(run_id, tool_pid, cuda_visible_devices)   # just after the tool started
    resources = finish(run_id, rusage)              # just after os.wait4 reaped the tool

CPU time is exact where the kernel adds it up: `rusage` (of os.wait4) holds the tool's CPU time and that of every
descendant waited for by its parent, down from the tool. To it `finish` adds the sampled CPU time of the tree's
processes that the tool can never have waited for: those still alive when the tool ended, and those that ended
after being re-parented out of the tree: exactly for those the keeper reaped (it tells the sampler each one's
rusage, supervise.keep), as last seen for those init reaped. Memory is the sum of
the tree's resident set sizes at each sample, and at least the largest single process's peak (`ru_maxrss`).

GPU figures come from NVML (`pynvml`, the optional extra `gpu`) for the devices in the run's CUDA_VISIBLE_DEVICES
(NVML indices or GPU UUIDs), or, without that variable, for every device that a process of the run used.
Without pynvml, without a device, or where NVML does not start, the run has no GPU figures.
Elsewhere than Linux there is no /proc: a run's figures are its rusage alone.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field

TICK = 1.0  # seconds between two samples
LINUX = sys.platform.startswith("linux")
_HZ = os.sysconf("SC_CLK_TCK") if LINUX else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if LINUX else 4096
# ru_maxrss is in KiB on Linux, in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass(frozen=True)
class Stat:
    """One process as /proc/<pid>/stat shows it."""
    zombie: bool
    ppid: int
    session: int
    cpu: tuple[int, int]  # user and system clock ticks of the process and of the children it reaped
    start: int  # clock ticks after boot: tells a reused pid apart
    rss_pages: int


def read_stat(pid: int) -> Stat | None:
    """The process, or None when it is gone (os.open: this runs for every process once a second)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 2048)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name (in parentheses) may hold spaces and parentheses: the fields start after the last ")"
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return Stat(zombie=fields[0] == b"Z", ppid=int(fields[1]), session=int(fields[3]),
                    cpu=(int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])),
                    start=int(fields[19]), rss_pages=int(fields[21]))
    except (IndexError, ValueError):
        return None


def started_at(pid: int) -> int | None:
    """When the process started (clock ticks after boot), a zombie too; None when it is gone."""
    stat = read_stat(pid)
    return stat.start if stat else None


def read_table() -> dict[int, Stat]:
    """Every process of this machine that a run may own: one pass over /proc. Unless the launcher runs as root,
    those of other users (kernel threads, daemons, other people's jobs) are left out by the owner of their
    /proc folder, which costs a quarter of reading them."""
    user = os.geteuid()
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (user == 0 or _owner(entry) == user):
            if (stat := read_stat(int(entry.name))) is not None:
                table[int(entry.name)] = stat
    return table


def _owner(entry: os.DirEntry) -> int | None:
    try:
        return entry.stat(follow_symlinks=False).st_uid
    except OSError:
        return None  # gone


def visible_devices(value: str | None) -> list[str] | None:
    """The device ids of a CUDA_VISIBLE_DEVICES value; None when unset (every device is visible).

    As CUDA reads it: the list ends at the first entry that is neither an index nor a GPU UUID (so "" and "-1"
    hide every device)."""
    if value is None:
        return None
    ids = []
    for entry in value.split(","):
        entry = entry.strip()
        if not (entry.isdigit() or entry.startswith("GPU-")):
            break
        ids.append(entry)
    return ids


# --- GPUs -----------------------------------------------------------------------------------------------------

@dataclass
class Device:
    index: int
    uuid: str
    name: str
    memory_total: int
    handle: object


class Nvml:
    """NVML's devices, read from the sampler thread only."""

    def __init__(self, pynvml, devices: list[Device]):
        self.pynvml = pynvml
        self.devices = devices

    @classmethod
    def start(cls) -> "Nvml | None":
        """None without pynvml, or when NVML does not start (no driver, no device)."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            devices = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                devices.append(Device(index, _text(pynvml.nvmlDeviceGetUUID(handle)),
                                      _text(pynvml.nvmlDeviceGetName(handle)),
                                      int(pynvml.nvmlDeviceGetMemoryInfo(handle).total), handle))
        except (pynvml.NVMLError, OSError):
            return None
        return cls(pynvml, devices) if devices else None

    def resolve(self, ids: list[str] | None) -> list[Device]:
        """The devices behind CUDA_VISIBLE_DEVICES ids (an index, or a UUID or a prefix of one only it has);
        every device for None. Ids NVML does not know are left out."""
        if ids is None:
            return list(self.devices)
        found = []
        for one in ids:
            if one.isdigit():
                matches = [d for d in self.devices if d.index == int(one)]
            else:
                matches = [d for d in self.devices if d.uuid.startswith(one)]
            if len(matches) == 1 and matches[0] not in found:
                found.append(matches[0])
        return found

    def usage(self, device: Device) -> tuple[dict[int, int | None], int | None] | None:
        """(GPU memory used by each process on the device, None where NVML cannot say; the device's utilization
        in percent, None where not supported); None when NVML does not answer."""
        try:
            running = self.pynvml.nvmlDeviceGetComputeRunningProcesses(device.handle)
            processes = {p.pid: p.usedGpuMemory for p in running}
        except self.pynvml.NVMLError:
            return None
        try:
            utilization = int(self.pynvml.nvmlDeviceGetUtilizationRates(device.handle).gpu)
        except self.pynvml.NVMLError:
            utilization = None
        return processes, utilization


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class GpuUse:
    """What one run used of one device."""
    device: Device
    samples: int = 0  # NVML answered for the device
    used: bool = False  # a process of the run held memory on it
    peak_memory: int = 0
    memory_known: bool = True  # False once NVML could not say a process's memory (then none is recorded)
    utilization_sum: int = 0
    utilization_samples: int = 0

    def add(self, processes: dict[int, int | None], utilization: int | None, members: set[int]) -> None:
        mine = [used for pid, used in processes.items() if pid in members]
        self.samples += 1
        self.used = self.used or bool(mine)
        if None in mine:
            self.memory_known = False
        else:
            self.peak_memory = max(self.peak_memory, sum(mine))
        if utilization is not None:
            self.utilization_sum += utilization
            self.utilization_samples += 1

    def record(self) -> dict:
        entry = {"index": self.device.index, "uuid": self.device.uuid, "name": self.device.name,
                 "memory_total_bytes": self.device.memory_total}
        if self.memory_known:
            entry["peak_memory_bytes"] = self.peak_memory
        if self.utilization_samples:
            entry["mean_utilization_pct"] = round(self.utilization_sum / self.utilization_samples, 1)
        return entry


# --- one run --------------------------------------------------------------------------------------------------

@dataclass
class Seen:
    """A process of the run as last sampled: its start tells a reused pid apart; an orphan's parent is outside the
    run, so its CPU time can never reach the tool's rusage."""
    start: int
    cpu: tuple[int, int]
    orphan: bool


@dataclass
class Run:
    """One watched run: its tool's pid (the session id of the run), the processes seen, and the figures so far."""
    pid: int
    gpu_ids: list[str] | None
    processes: dict[int, Seen] = field(default_factory=dict)
    unwaited: list[float] = field(default_factory=lambda: [0, 0])  # user, system ticks never reaching the tool
    peak_rss_pages: int = 0
    max_processes: int = 0
    samples: int = 0
    gpus: list[GpuUse] | None = None  # resolved at the first sample with NVML
    gone: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # orphans counted as last seen
    exact: set[tuple[int, int]] = field(default_factory=set)  # orphans the keeper reaped: counted exactly

    def sample(self, table: dict[int, Stat], children: dict[int, list[int]],
               sessions: dict[int, list[int]]) -> set[int]:
        """Take one sample from the table of every process (by parent and by session); the run's processes."""
        roots = list(sessions.get(self.pid, ()))
        roots += [pid for pid, seen in self.processes.items() if pid in table and table[pid].start == seen.start]
        members, todo = set(), roots
        while todo:
            pid = todo.pop()
            if pid not in members:
                members.add(pid)
                todo.extend(children.get(pid, ()))
        for pid, seen in self.processes.items():
            if seen.orphan and (pid not in members or table[pid].start != seen.start):
                self._count_gone(pid, seen)  # it ended where the keeper or init reaped it
        self.processes = {pid: Seen(table[pid].start, table[pid].cpu,
                                    orphan=pid != self.pid and table[pid].ppid not in members) for pid in members}
        live = [table[pid] for pid in members if not table[pid].zombie]
        self.peak_rss_pages = max(self.peak_rss_pages, sum(stat.rss_pages for stat in live))
        self.max_processes = max(self.max_processes, len(live))
        self.samples += 1
        return members

    def _add_unwaited(self, cpu: tuple[float, float]) -> None:
        self.unwaited[0] += cpu[0]
        self.unwaited[1] += cpu[1]

    def _count_gone(self, pid: int, seen: Seen) -> None:
        """An orphan that ended: as last seen, unless the keeper said what it used."""
        if (pid, seen.start) not in self.exact:
            self._add_unwaited(seen.cpu)
            self.gone[pid, seen.start] = seen.cpu

    def reaped_by_keeper(self, pid: int, start: int, cpu: tuple[float, float]) -> None:
        """The keeper reaped this process (CPU time in ticks, its waited-for children's included): when it was one
        of the run's, its parent never waited for it, and this is what it used, exactly."""
        if (pid, start) in self.gone:  # counted as last seen: made exact
            counted = self.gone.pop((pid, start))
            self._add_unwaited((cpu[0] - counted[0], cpu[1] - counted[1]))
        elif pid in self.processes and self.processes[pid].start == start:
            self._add_unwaited(cpu)
            self.exact.add((pid, start))

    def settle(self) -> None:
        """After the tool was reaped: every process of the run still there is one the tool never waited for."""
        for pid, seen in self.processes.items():
            if pid == self.pid:
                continue
            now = read_stat(pid)
            if (pid, seen.start) in self.exact:
                continue
            if now is not None and now.start == seen.start:
                self._add_unwaited(now.cpu)
            elif seen.orphan:
                self._count_gone(pid, seen)


# --- the sampler ----------------------------------------------------------------------------------------------

class Sampler:
    """One thread sampling every watched run once per TICK, alive while a run is watched."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._thread: threading.Thread | None = None
        self._nvml: Nvml | None = None
        self._nvml_tried = False
        self._keeper: int | None = None  # the pipe where the keeper says what the orphans it reaped used
        self._heard = b""  # the start of a line not read whole yet

    def hear_keeper(self, fd: int) -> None:
        """Take the keeper's reports (supervise.keep): `<pid> <start> <user s> <system s>` per orphan reaped."""
        os.set_blocking(fd, False)
        self._keeper = fd

    def _hear(self) -> None:
        """Give each run what the keeper reaped of it since last time (with the lock held)."""
        if self._keeper is None:
            return
        while True:
            try:
                data = os.read(self._keeper, 65536)
            except BlockingIOError:
                break
            if not data:  # the keeper is gone
                os.close(self._keeper)
                self._keeper = None
                break
            self._heard += data
        *lines, self._heard = self._heard.split(b"\n")
        for line in lines:
            try:
                pid, start, user, system = line.split()
                report = int(pid), int(start), (float(user) * _HZ, float(system) * _HZ)
            except ValueError:
                continue
            for run in self._runs.values():
                run.reaped_by_keeper(*report)

    def watch(self, key: str, pid: int, cuda_visible_devices: str | None = None) -> None:
        """Follow the run whose tool (started in a session of its own) has this pid."""
        if not LINUX:
            return
        with self._lock:
            self._runs[key] = Run(pid, visible_devices(cuda_visible_devices))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="experimentstash-resources", daemon=True)
                self._thread.start()

    def finish(self, key: str, rusage: resource.struct_rusage) -> dict:
        """The run's `resources` record, once os.wait4 has reaped its tool (`rusage` is what it returned)."""
        with self._lock:
            self._hear()  # what the keeper reaped until now
            run = self._runs.pop(key, None)
        record = {"cpu_user_s": rusage.ru_utime, "cpu_system_s": rusage.ru_stime,
                  "max_process_rss_bytes": rusage.ru_maxrss * _MAXRSS_UNIT}
        if run is not None:
            run.settle()
            record["cpu_user_s"] += run.unwaited[0] / _HZ
            record["cpu_system_s"] += run.unwaited[1] / _HZ
            record["peak_rss_bytes"] = max(run.peak_rss_pages * _PAGE, record["max_process_rss_bytes"])
            record["max_processes"] = max(run.max_processes, 1)
            record["samples"] = run.samples
            # the devices the run was given, or without CUDA_VISIBLE_DEVICES those its processes used
            gpus = [use.record() for use in run.gpus or ()
                    if use.samples and (use.used or run.gpu_ids is not None)]
            if gpus:
                record["gpus"] = gpus
        record["cpu_user_s"] = round(record["cpu_user_s"], 3)
        record["cpu_system_s"] = round(record["cpu_system_s"], 3)
        return record

    def _loop(self) -> None:
        next_tick = time.monotonic()
        try:
            while True:
                with self._lock:
                    runs = list(self._runs.items())
                    if not runs:
                        self._thread = None
                        return
                self._tick(runs)
                next_tick = max(next_tick + TICK, time.monotonic())
                time.sleep(max(0.0, next_tick - time.monotonic()))
        except BaseException:  # shown by threading; the next watched run starts a new thread
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
            raise

    def _tick(self, runs: list[tuple[str, Run]]) -> None:
        table = read_table()
        children: dict[int, list[int]] = {}
        sessions: dict[int, list[int]] = {}
        for pid, stat in table.items():
            children.setdefault(stat.ppid, []).append(pid)
            sessions.setdefault(stat.session, []).append(pid)
        nvml = self._resolve_gpus([run for _, run in runs])
        devices = {use.device.index: use.device for _, run in runs for use in run.gpus or ()}
        usage = {index: nvml.usage(device) for index, device in devices.items()}
        with self._lock:
            self._hear()
            for key, run in runs:
                if self._runs.get(key) is not run:
                    continue  # finished while /proc and NVML were read
                members = run.sample(table, children, sessions)
                for use in run.gpus or ():
                    if usage[use.device.index] is not None:
                        use.add(*usage[use.device.index], members)

    def _resolve_gpus(self, runs: list[Run]) -> Nvml | None:
        """NVML, started once (on the first run that may see a device); gives each new run its devices."""
        waiting = [run for run in runs if run.gpus is None and run.gpu_ids != []]
        if waiting and not self._nvml_tried:
            self._nvml_tried = True
            self._nvml = Nvml.start()
        for run in waiting:
            run.gpus = [GpuUse(device) for device in self._nvml.resolve(run.gpu_ids)] if self._nvml else []
        return self._nvml


_sampler = Sampler()
watch = _sampler.watch
finish = _sampler.finish
hear_keeper = _sampler.hear_keeper
