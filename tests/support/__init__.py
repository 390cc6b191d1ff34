"""Helpers shared by the test tiers (fakes, subprocess wrappers). Never imported by product code."""
