"""The paper's tables in one command, every stage through fairseq-train / fairseq-generate.

    python -m fairseq_vqw2v.reproduce --out results/ [--manifest-dir DATA] [--preset embedded|paper]
        [--stages 'am/*,decode/ltr/*'] [--dry-run] [--jobs N] [--set am_updates=200 ...]

See :mod:`.pipeline` for the stages, :mod:`.stages` for when a stage is complete or rerun, and
:mod:`.tables` for ``results/tables.md`` and the plots.
"""
