"""What the enclave tells an access request (Art. 15): which datasets hold rows for the subject.

Registered with ``consent.requests.sources`` so the access export lists, per stored version, how many
rows carry the subject's pseudonym of the dataset's domain — counts only, never the values.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.decisions.models import Pseudonym
from consent.requests.sources import DatasetRows
from enclave.datasets.ingestion import PSEUDONYM
from enclave.datasets.models import Dataset, DatasetVersion, VersionState
from enclave.objects.store import EncryptedStore, ObjectContext


@dataclass
class EnclaveDatasets:
    """The enclave's datasets as a source of the access export."""

    store_factory: Callable[[], EncryptedStore]
    name: str = "enclave"

    def rows_for(self, session: Session, subject_id: str) -> list[DatasetRows]:
        """Per published version holding the subject's pseudonym, how many rows it holds."""
        found: list[DatasetRows] = []
        store: EncryptedStore | None = None
        datasets = session.execute(
            select(Dataset).where(Dataset.destroyed_at.is_(None)).order_by(Dataset.id)
        ).scalars()
        for dataset in datasets:
            pseudonym = session.execute(
                select(Pseudonym.pseudonym).where(
                    Pseudonym.domain == dataset.domain, Pseudonym.subject_id == subject_id
                )
            ).scalar_one_or_none()
            if pseudonym is None:
                continue
            store = store or self.store_factory()
            versions = session.execute(
                select(DatasetVersion)
                .where(
                    DatasetVersion.dataset_id == dataset.id,
                    DatasetVersion.state == VersionState.published.value,
                )
                .order_by(DatasetVersion.version)
            ).scalars()
            for version in versions:
                rows = 0
                for name in version.objects:
                    data = store.read_object(session, ObjectContext(dataset.id, version.version, name))
                    frame = pl.read_parquet(io.BytesIO(data), columns=[PSEUDONYM])
                    rows += frame.filter(pl.col(PSEUDONYM) == pseudonym).height
                if rows:
                    found.append(DatasetRows(f"{dataset.id} version {version.version}", rows))
        return found
