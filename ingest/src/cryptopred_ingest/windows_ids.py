"""Trade-id dedup of the candle builder (internal): which ids a pair has counted.

Ids are kept per window of the widest lane (`Window.ids`, appended on the hot path), then as
an `IdBlock` once that window closed, until the pair's watermark is `ID_MARGIN_MS` past its
end; by then any repeat of them would be late for every width anyway. Lookups happen only for
ids at or below the highest id seen (ids grow, so a repeat or a reordered trade), against a set
filled lazily from the windows and blocks.
"""

from __future__ import annotations

from cryptopred_ingest.windows_state import IdBlock, PairState

ID_MARGIN_MS = 300_000  # ids stay this long (event time) after their widest window closed


def is_duplicate(ps: PairState, trade_id: int, offset: int | None) -> bool:
    """Whether the pair already counted `trade_id`.

    After a restore, trades at offsets up to `replay_until` are the originals being replayed:
    they are checked only against ids counted since the restore; the first later trade that
    needs a lookup merges the restored ids in.
    """
    seen = ps.seen
    for w in ps.lanes[-1].windows.values():
        if w.ids_synced < len(w.ids):
            seen.update(w.ids[w.ids_synced :])
            w.ids_synced = len(w.ids)
    for block in ps.id_blocks:
        if block.synced < len(block.ids):
            seen.update(block.ids[block.synced :])
            block.synced = len(block.ids)
    if trade_id in seen:
        return True
    if ps.restored_blocks is None:
        return False
    if offset is not None and ps.replay_until is not None and offset <= ps.replay_until:
        return False  # the original, replayed after a restart: counted again
    ps.id_blocks = sorted([*ps.restored_blocks, *ps.id_blocks], key=lambda b: b.end_ms)
    ps.restored_blocks = None
    return is_duplicate(ps, trade_id, offset)


def keep_id(ps: PairState, trade_id: int, ts_ms: int, widest_ms: int) -> None:
    """Keep the id of a trade that the widest lane rejected but a narrower one counted."""
    ps.id_blocks.append(IdBlock(ts_ms - ts_ms % widest_ms + widest_ms, [trade_id]))
    ps.id_blocks.sort(key=lambda b: b.end_ms)


def forget_ids(ps: PairState) -> None:
    """Drop the ids of windows that closed more than ID_MARGIN_MS ago (event time)."""
    limit = ps.wm_ms - ID_MARGIN_MS
    for blocks in (ps.id_blocks, ps.restored_blocks):
        if not blocks or blocks[0].end_ms > limit:
            continue
        n = 0
        while n < len(blocks) and blocks[n].end_ms <= limit:
            ps.seen.difference_update(blocks[n].ids)
            n += 1
        del blocks[:n]
