"""Errors of the catalog."""

from __future__ import annotations

from infra.errors import InvalidField, NotFound, ReasonedConflict


class InvalidDataset(InvalidField):
    """A dataset declaration breaks a rule; the answer names the field."""


class DatasetConflict(ReasonedConflict):
    """The dataset clashes with the catalog (the id is taken, the dataset was destroyed...)."""


class DatasetNotFound(NotFound):
    """No such dataset in the catalog."""

    def __init__(self, dataset_id: str) -> None:
        super().__init__(f"no dataset {dataset_id}", extra={"reason": "unknown_dataset"})
