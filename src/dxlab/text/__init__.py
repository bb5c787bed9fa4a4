"""Clinical notes and other free text -> HPO findings with spans and assertions (issue 16).

    from dxlab.text import Annotator, patient_fields
    annotator = Annotator().fit(knowledge)            # or Annotator.load(path) for a fitted one
    mentions = annotator.annotate(note)               # [Mention(start, end, text, hpo_id, assertion, relative, ...)]
    patient_fields(mentions)    # {"findings", "excluded", "uncertain", "family", "family_history"}
"""

from dxlab.text.annotate import Annotator, Mention, TextError, check_text, patient_fields
from dxlab.text.context import ASSERTIONS, FAMILY, NEGATED, PRESENT, UNCERTAIN

__all__ = ["Annotator", "Mention", "TextError", "check_text", "patient_fields", "ASSERTIONS", "FAMILY", "NEGATED",
           "PRESENT", "UNCERTAIN"]
