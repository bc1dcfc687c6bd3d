"""``python -m preimage`` (also what ``torchrun -m preimage train ...`` runs)."""

from __future__ import annotations

from preimage.cli import main

raise SystemExit(main())
