"""A live progress bar for the round loop (tqdm), silent when disabled."""

from __future__ import annotations

from types import TracebackType

from tqdm.auto import tqdm
from typing_extensions import Self


class RoundProgress:
    """One bar over rounds: the current round and phase, last loss and accuracies, ETA."""

    def __init__(self, rounds: int, enabled: bool = True, initial: int = 0) -> None:
        self.bar = tqdm(total=rounds, initial=initial, unit="round", disable=not enabled, dynamic_ncols=True)

    def phase(self, round_idx: int, phase: str) -> None:
        self.bar.set_description(f"round {round_idx}/{self.bar.total} {phase}")

    def done(self, round_idx: int, loss: float, acc: float, global_acc: float) -> None:
        self.bar.set_description(f"round {round_idx}/{self.bar.total}")
        self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", global_acc=f"{global_acc:.3f}")
        self.bar.update(1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bar.close()
