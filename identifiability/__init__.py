"""Identifiability layer: symmetry group, constraints, relabelling, diagnostics.

Filled in by later work (issue 3 and 5); the package exists so the namespace is complete.
"""
