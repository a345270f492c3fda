"""Stage "emissions -> text": CTC decoders (greedy, KenLM lexicon beam search, char LM), error
rates, LM building and LM weight tuning. Depends only on emissions, label dictionaries and files,
never on models or tasks.

Submodules are imported where used, so that scoring does not load flashlight or fairseq models.
"""
