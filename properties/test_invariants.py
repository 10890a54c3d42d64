"""Property: invariants (see properties/checks.py), under the plugin's --dsa-* options and profile."""

from properties._pytest_suite import property_test

test_invariants = property_test("invariants")
