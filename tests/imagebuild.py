"""The tests' image builders live in the package (``imgscan.imagebuild``) so that the sample
image script and plugin authors can use them too; tests import them from here."""

from imgscan.imagebuild import *  # noqa: F403
