"""Where Sluice keeps its state and how it reaches its services, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SluiceSettings(BaseSettings):
    """Settings from `SLUICE_*` environment variables; every field has a working local default."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    home: Path = Field(default=Path(".sluice"), description="state folder: database, models, reports, Label Studio data")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under `home` when unset")
    labelstudio_url: str | None = Field(default=None, description="an existing Label Studio; the local one when unset")
    labelstudio_token: str = Field(default="sluice-local-token-7f3a9c2e1b", max_length=40, min_length=6)
    labelstudio_port: int = 18080
    labelstudio_venv: Path = PROJECT_ROOT / ".venv-labelstudio"
    labelstudio_username: str = "admin@sluice.local"
    labelstudio_password: str = "sluice-admin-pass"
    labelstudio_project: str = "Sluice review queue"
    labelstudio_home: Path | None = Field(default=None, description="Label Studio's data; `home`/labelstudio when unset")
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="where the flows' batch tasks run: threads, or a Dask cluster")
    dask_address: str | None = Field(default=None, description="a Dask scheduler; a local cluster when unset")
    dask_workers: int = Field(default=2, ge=1, le=64, description="worker processes of the local Dask cluster")
    store_lock_timeout: float = Field(default=900.0, gt=0,
                                      description="seconds a flow waits for another one to release the store")

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'sluice.db'}"

    @property
    def labelstudio_data_dir(self) -> Path:
        if self.labelstudio_home is not None:
            return self.labelstudio_home.expanduser().resolve()
        return self.resolved_home / "labelstudio"

    @property
    def resolved_labelstudio_url(self) -> str:
        return self.labelstudio_url or f"http://127.0.0.1:{self.labelstudio_port}"

    @property
    def models_dir(self) -> Path:
        return self.resolved_home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.resolved_home / "reports"


@lru_cache(maxsize=1)
def get_settings() -> SluiceSettings:
    return SluiceSettings()
