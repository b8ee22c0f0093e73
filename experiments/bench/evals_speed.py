"""Time `interp eval`'s whole default suite on the default model: wall time and this process's
CPU time per stage (model load, each suite), batched as the command runs it.

    python experiments/bench/evals_speed.py [--threads N]

CPU time is reported beside wall time because the test machine is shared: on a busy machine the
wall time measures the neighbours, the CPU time what the evaluation itself costs.
"""

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from interp.evals.run import evaluate_models

    marks: list[tuple[str, float, float]] = []
    start = (time.perf_counter(), time.process_time())

    def on_suite(done: int, total: int, name: str) -> None:
        marks.append((name or "end", time.perf_counter(), time.process_time()))

    report = evaluate_models("default", on_suite=on_suite, device="cpu")
    print(f"threads {torch.get_num_threads()}, {len(report.rows)} rows")
    previous = ("load", *start)
    for name, wall, cpu in marks:
        print(
            f"{previous[0]:>14}: {wall - previous[1]:6.2f} s wall, {cpu - previous[2]:6.2f} s CPU"
        )
        previous = (name, wall, cpu)
    total_wall, total_cpu = marks[-1][1] - start[0], marks[-1][2] - start[1]
    print(f"{'total':>14}: {total_wall:6.2f} s wall, {total_cpu:6.2f} s CPU")


if __name__ == "__main__":
    main()
