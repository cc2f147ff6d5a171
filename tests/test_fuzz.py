"""A bounded, seeded slice of the spec fuzzer (tests/fuzz_specs.py), counted
with the other generator tests; `make fuzz N=... SEED=...` runs more."""
import collections
import concurrent.futures
import os
import random
import shutil
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_specs  # noqa: E402

CASES = int(os.environ.get("PD_FUZZ_CASES", "40"))
SEED = os.environ.get("PD_FUZZ_SEED", "polldrop")
# The cases are independent and mostly wait on the generator and the C
# compiler: SLICES fuzzers, each with its own generator process, run side by
# side, slice k taking cases k, k + SLICES, ... (the slow cases, specs of
# thousands of states, fall apart). The unmutated corpus is generated once,
# and every slice reads it.
SLICES = 4


@unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
class FuzzSlice(unittest.TestCase):
    def test_mutated_specs_keep_the_generator_contract(self):
        work = tempfile.mkdtemp(prefix="pd-fuzz-")

        fuzzers = []
        for k in range(SLICES):
            d = os.path.join(work, f"slice{k}")
            os.makedirs(d)
            fuzzers.append(fuzz_specs.Fuzzer(d, base=fuzzers[0].base if k else None))
        fuzzers[0].prepare()

        def one(k):
            f = fuzzers[k]
            return f.run(len(range(k, CASES, SLICES)), SEED, k, SLICES)

        with concurrent.futures.ThreadPoolExecutor(SLICES) as pool:
            results = list(pool.map(one, range(SLICES)))
        stats = collections.Counter()
        failures = []
        for s, f in results:
            stats.update(s)
            failures += f
        # On failure the work directory stays, with each failing spec.
        self.assertEqual(failures, [])
        shutil.rmtree(work)
        self.assertEqual(stats["cases"], CASES)
        # The slice exercises both sides of the contract.
        self.assertGreater(stats["accepted"], 0)
        self.assertGreater(stats["rejected"], 0)


class Mutations(unittest.TestCase):
    """The structural mutations parse and emit with libyaml where PyYAML has
    it, and the first cases of the seed are the pure Python loader's and
    dumper's, text for text (a few later ones differ: fuzz_specs.py, LOADER)."""

    @unittest.skipUnless(fuzz_specs.yaml.__with_libyaml__, "PyYAML without libyaml")
    def test_libyaml_is_used_and_makes_the_same_cases(self):
        self.assertIs(fuzz_specs.LOADER, fuzz_specs.yaml.CBaseLoader)
        self.assertIs(fuzz_specs.DUMPER, fuzz_specs.yaml.CSafeDumper)
        inputs = fuzz_specs.corpus()
        load = fuzz_specs.yaml.load
        with mock.patch.object(fuzz_specs.yaml, "load", side_effect=load) as parsed:
            for i in range(12):
                texts = []
                for loader, dumper in ((None, None), (fuzz_specs.yaml.BaseLoader,
                                                      fuzz_specs.yaml.SafeDumper)):
                    rng = random.Random(f"{SEED}:{i}")
                    name, text = rng.choice(inputs)
                    texts.append(fuzz_specs.mutate(name, text, rng, loader, dumper))
                self.assertEqual(texts[0], texts[1], f"case {i}")
        # Some of the cases took the structural path.
        self.assertGreater(parsed.call_count, 0)


if __name__ == "__main__":
    unittest.main()
