"""Translation for the Lib's user-visible strings, the way Slicer's template does it.

``_("text")`` is the marker Slicer's lupdate scripts collect; at run time it calls
``slicer.i18n.translate`` with this file's context (package.file, as ``slicer.i18n.tr``
computes it). Headless (no ``slicer.app``) the text comes back unchanged.
"""
from __future__ import annotations

import os
import sys


def _(text: str) -> str:
    try:
        import slicer
        from slicer.i18n import getContext, translate
    except ImportError:
        return text
    if getattr(slicer, "app", None) is None:
        return text
    caller = sys._getframe(1).f_code.co_filename
    return translate(getContext(os.path.abspath(caller)), text)
