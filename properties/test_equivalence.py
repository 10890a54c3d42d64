"""Property: equivalence (see properties/checks.py), under the plugin's --dsa-* options and profile."""

from properties._pytest_suite import property_test

test_equivalence = property_test("equivalence")
