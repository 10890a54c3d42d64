"""Property: multi-step scheduler state machine (see properties/machine.py), persistent instances."""

from properties._pytest_suite import property_test

test_multi_step = property_test("multi_step")
