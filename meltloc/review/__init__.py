"""``meltloc review``: check every detection by eye in the browser, correct it, export the melt log.

Modules: :mod:`~meltloc.review.store` (the decisions file), :mod:`~meltloc.review.export`
(the melt log), :mod:`~meltloc.review.tiles` (image tiles cached on disk),
:mod:`~meltloc.review.session` (one review: sections, images, hand log, truth),
:mod:`~meltloc.review.app` (the FastAPI app) and :mod:`~meltloc.review.server`
(uvicorn, the shipped sample). The page is plain HTML, JavaScript and CSS in
``static/``: no build step, nothing loaded from the network.
"""

from meltloc.review.store import (DecisionError, DecisionStore, ReviewError, default_decisions_path,
                                  STATUSES)

__all__ = ["DecisionError", "DecisionStore", "ReviewError", "default_decisions_path", "STATUSES"]
