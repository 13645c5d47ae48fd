"""Memory figures of the current process from /proc, with nothing but the standard library: the
demo, its workers and nt_worker.py (run in the neural-tangents venv, without ntkit) import it."""
import os


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, which Linux keeps
    across execve, it starts afresh at exec, so a worker's figure is not its parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    """This process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
