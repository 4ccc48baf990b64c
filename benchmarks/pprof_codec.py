"""pprof load and write speed: plop's reader beside the bare protobuf walk, side by side.

Why this exists: it decided the codec. At commit cb8342c plop read
profile.proto with a hand-written pure-Python decoder; this script, run
there, measured it at 4.8 times the time of the ``protobuf`` runtime's
parse plus the walk into plop's model (numbers in the README), so plop now
uses the runtime with generated code (plop/formats/profile_pb2.py). Now it
shows what plop's checks cost on top of the bare walk. The same
gzip-compressed file, written by plop, is loaded

* by ``plop.formats.loads`` (decompress, parse, validate every reference,
  build the Profile with its metadata);
* by the bare walk a reader must do at least: the same decompression and
  ``ParseFromString``, then samples to plop's Profile without any check, in
  message classes built from a separate descriptor of the same fields;
* by ``ParseFromString`` alone.

Medians of several runs in one process, printed with their ratio. Usage:
``python benchmarks/pprof_codec.py [--stacks N] [--runs N]``.
"""
from __future__ import annotations

import argparse
import gzip
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from plop import formats  # noqa: E402
from plop.profile import Frame, Profile  # noqa: E402


def make_profile(stacks: int, functions: int, seed: int = 1) -> Profile:
    rng = random.Random(seed)
    frames = [Frame("/srv/app/mod%d.py" % (i % 50), "func_%d" % i, i, i + rng.randrange(1, 40))
              for i in range(functions)]
    samples, cpu = {}, {}
    for _ in range(stacks):
        depth = rng.randrange(5, 40)
        stack = tuple(rng.choice(frames) for _ in range(depth))
        key = ("thread-%d" % rng.randrange(4), stack)
        samples[key] = rng.randrange(1, 100)
        cpu[key] = rng.randrange(0, samples[key] + 1)
    return Profile(samples, {"interval": 0.01, "mode": "real", "start_time": 1.7e9, "duration": 60.0}, cpu)


def protobuf_classes():
    """Profile message classes from a descriptor of profile.proto (field numbers as in pprof's file)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="bench_profile.proto", package="bench", syntax="proto3")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = ".bench." + type_name

    I64, U64, STR, MSG = F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_STRING, F.TYPE_MESSAGE
    msg("ValueType", [("type", 1, I64, False, None), ("unit", 2, I64, False, None)])
    msg("Label", [("key", 1, I64, False, None), ("str", 2, I64, False, None), ("num", 3, I64, False, None),
                  ("num_unit", 4, I64, False, None)])
    msg("Sample", [("location_id", 1, U64, True, None), ("value", 2, I64, True, None),
                   ("label", 3, MSG, True, "Label")])
    msg("Line", [("function_id", 1, U64, False, None), ("line", 2, I64, False, None)])
    msg("Location", [("id", 1, U64, False, None), ("mapping_id", 2, U64, False, None),
                     ("address", 3, U64, False, None), ("line", 4, MSG, True, "Line")])
    msg("Function", [("id", 1, U64, False, None), ("name", 2, I64, False, None),
                     ("system_name", 3, I64, False, None), ("filename", 4, I64, False, None),
                     ("start_line", 5, I64, False, None)])
    msg("Profile", [("sample_type", 1, MSG, True, "ValueType"), ("sample", 2, MSG, True, "Sample"),
                    ("location", 4, MSG, True, "Location"), ("function", 5, MSG, True, "Function"),
                    ("string_table", 6, STR, True, None), ("time_nanos", 9, I64, False, None),
                    ("duration_nanos", 10, I64, False, None), ("period_type", 11, MSG, False, "ValueType"),
                    ("period", 12, I64, False, None), ("comment", 13, I64, True, None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Profile"))


def load_with_protobuf(cls, data: bytes) -> Profile:
    """The walk a protobuf-runtime reader does: messages to plop's Profile (no validation)."""
    msg = cls()
    msg.ParseFromString(gzip.decompress(data))
    st = list(msg.string_table)
    funcs = {f.id: (st[f.filename], st[f.name], f.start_line) for f in msg.function}
    locs = {}
    for loc in msg.location:
        locs[loc.id] = tuple(Frame(*funcs[ln.function_id], ln.line) for ln in reversed(loc.line))
    thread_key = st.index("thread_name")
    samples, cpu = {}, {}
    for s in msg.sample:
        stack = tuple(f for lid in reversed(s.location_id) for f in locs[lid])
        thread = next((st[lb.str] for lb in s.label if lb.key == thread_key), "")
        values = s.value
        key = (thread, stack)
        samples[key] = values[0]
        cpu[key] = values[2] // 10_000_000
    return Profile(samples, {}, cpu)


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=int, default=20000)
    parser.add_argument("--functions", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    profile = make_profile(args.stacks, args.functions)
    data = formats.dumps(profile, "pprof")
    raw = gzip.decompress(data)
    print("profile: %d stacks, %d frames; pprof %.1f KiB gzipped, %.1f KiB raw"
          % (len(profile.samples), args.functions, len(data) / 1024, len(raw) / 1024))
    assert formats.loads(data).samples == profile.samples
    t_write = median_time(lambda: formats.dumps(profile, "pprof"), args.runs)
    t_plop = median_time(lambda: formats.loads(data), args.runs)
    print("plop dumps (pprof):               %8.1f ms" % (t_write * 1e3))
    print("plop loads (parse+check+build):   %8.1f ms" % (t_plop * 1e3))
    import google.protobuf
    from google.protobuf.internal import api_implementation

    cls = protobuf_classes()
    back = load_with_protobuf(cls, data)
    assert back.samples == profile.samples, "the protobuf walk disagrees with plop's reader"
    t_pb = median_time(lambda: load_with_protobuf(cls, data), args.runs)
    t_parse = median_time(lambda: cls().ParseFromString(raw), args.runs)
    print("protobuf %s (%s) parse+walk:  %8.1f ms" % (google.protobuf.__version__,
                                                       api_implementation.Type(), t_pb * 1e3))
    print("protobuf ParseFromString alone:   %8.1f ms" % (t_parse * 1e3))
    print("ratio plop loads / bare walk:     %8.2f" % (t_plop / t_pb))


if __name__ == "__main__":
    main()
