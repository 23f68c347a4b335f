"""Child-process entry point for the CPU batch search: ``python -m modelprof.timing.probe`` reads one JSON request on
stdin and prints one JSON answer line (see :func:`modelprof.timing.measure.probe_in_child`)."""

import json
import sys


def main() -> None:
    request = json.loads(sys.stdin.read())
    sys.path[:] = request.pop("path", sys.path)  # the parent's path, so the same TARGET imports here

    from modelprof.timing.measure import probe_in_child

    try:
        answer = probe_in_child(request)
    except MemoryError:
        answer = {"oom": True}
    except Exception as exc:  # report, never traceback: the parent turns this into one line
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
