"""Keys read from the terminal while a live view runs (`top`, `watch`)."""
from __future__ import annotations

import sys
import time


class Keys:
    """q from the terminal without Enter (cbreak mode), restored on exit; no-op without a tty."""

    def __init__(self) -> None:
        self.fd = None
        self.saved = None

    def __enter__(self):
        if sys.stdin is not None and sys.stdin.isatty():
            import termios
            import tty
            self.fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait_quit(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as q is pressed."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        import os
        import select
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                ch = os.read(self.fd, 32)
                if b"q" in ch.lower() or not ch:
                    return True
        return False
