"""The label convention every module shares: 0 = real, 1 = fake (the positive class, the one a
detector is meant to catch). Kept apart so that a verdict needs neither pandas nor the CAM
libraries."""

LABEL_NAMES = ("real", "fake")
CLASS_INDEX = {name: index for index, name in enumerate(LABEL_NAMES)}
