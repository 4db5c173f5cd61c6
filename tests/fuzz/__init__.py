"""The fuzzer of issue 7: bad and unusual inputs for every command, and the contract they keep.

baselines.py builds the valid files; elfview.py and mutate.py turn them into
ELF mutations; inputs.py adds special files and bad text files and gives
every input a name; commands.py says which command runs on which input;
runner.py runs one and checks the contract; sweep.py runs them all over a
process pool; summary.py prints the figures and the table of violations.
``make fuzz`` (``python -m fuzz`` from tests/) runs the whole sweep;
tests/test_fuzz.py a fixed-seed subset.
"""
