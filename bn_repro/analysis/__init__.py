"""Measurements on networks: population statistics (Algorithm 2), unit drift (Figure 1)."""
