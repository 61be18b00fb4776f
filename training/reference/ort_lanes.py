"""How onnxruntime spends 2 cores on the shipped segmentation member: one session with 2 intra-op
threads (what `neurobatch process --threads 2` and the MONAI pipeline both do) against two sessions
with 1 thread each running windows side by side, and batch 4 against 4 single windows.
Reported in docs/benchmarks.md.

    .venv/bin/python training/reference/ort_lanes.py [--model models/brain-tissue/member_0.onnx] [--runs 6]
"""

import argparse
import threading
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/brain-tissue/member_0.onnx")
    ap.add_argument("--runs", type=int, default=6, help="batches of 4 windows per configuration (even)")
    args = ap.parse_args()
    x = np.random.default_rng(0).random((4, 1, 64, 64, 64), dtype=np.float32)
    feeds = {"image": x, "mc_dropout": np.zeros(1, np.float32)}
    one = session(args.model, 2)
    one.run(None, feeds)
    t = time.perf_counter()
    for _ in range(args.runs):
        one.run(None, feeds)
    shared = (time.perf_counter() - t) / args.runs
    single = {"image": x[:1], "mc_dropout": feeds["mc_dropout"]}
    t = time.perf_counter()
    for _ in range(args.runs * 4):
        one.run(None, single)
    unbatched = (time.perf_counter() - t) / args.runs
    lanes = [session(args.model, 1), session(args.model, 1)]
    for s in lanes:
        s.run(None, feeds)

    def work(s):
        for _ in range(args.runs // 2):
            s.run(None, feeds)

    t = time.perf_counter()
    threads = [threading.Thread(target=work, args=(s,)) for s in lanes]
    for h in threads:
        h.start()
    for h in threads:
        h.join()
    parallel = (time.perf_counter() - t) / args.runs
    print(f"1 session x 2 threads, batch 4:        {shared:.3f} s per 4 windows")
    print(f"1 session x 2 threads, 4 x batch 1:    {unbatched:.3f} s per 4 windows")
    print(f"2 sessions x 1 thread side by side:    {parallel:.3f} s per 4 windows ({shared / parallel:.2f}x)")


if __name__ == "__main__":
    main()
