"""Tokens with character offsets, sentences, and the two normal forms a token is matched under.

`exact_form`: lower case, accents stripped, US spelling, singular ("Tumours" -> "tumor", "vertebrae" -> "vertebra").
`root_form`:  the exact form reduced further, so that the adjective, the noun and the participle of a finding meet
("hypoplastic" / "hypoplasia", "scoliotic" / "scoliosis", "thickened" / "thickening" / "thick", "renal" / "kidney",
"anomalies" / "abnormality" / "malformation"). The matcher tries exact forms first and roots only when the exact
forms find nothing, so the coarser form never overrides a dictionary hit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# A token is a run of letters or digits (any script); everything else is punctuation or space.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Punctuation that ends a clause for the matcher (a finding's words never straddle these).
CLAUSE_BREAKS = frozenset(";:()[]{}")


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    text: str  # as written
    exact: str  # exact_form(text)
    root: str  # root_form(exact)
    index: int  # position in the document's token list


def tokenize(text: str) -> list[Token]:
    tokens = []
    for i, m in enumerate(_WORD.finditer(text)):
        surface = m.group()
        exact = exact_form(surface)
        tokens.append(Token(m.start(), m.end(), surface, exact, root_form(exact), i))
    return tokens


# -- sentences -----------------------------------------------------------------------------------------------------
# A full stop ends a sentence unless it closes one of these (or a single initial, "J. Smith").
_NOT_ENDS = frozenset({"al", "e.g", "i.e", "eg", "ie", "dr", "mr", "mrs", "ms", "vs", "fig", "figs", "no", "approx",
                       "ca", "cf", "etc", "st", "yr", "yrs", "mo", "wk", "wks", "pt", "pts", "hx", "dx", "ref"})
_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*•\d])|[.!?]+$")


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; a blank line or a bullet also ends one."""
    bounds, start = [], 0
    for m in _END.finditer(text):
        end = m.end()
        before = text[start:m.start()].rsplit(None, 1)
        last = before[-1].lower().rstrip(".") if before else ""
        if m.group().startswith(".") and (last in _NOT_ENDS or (len(last) == 1 and last.isalpha())):
            continue
        if text[m.end():m.end() + 1].islower() and m.group().strip().startswith("."):
            continue  # "approx. three" -- a lower-case word after a full stop rarely opens a sentence
        bounds.append((start, end))
        start = end
    if start < len(text):
        bounds.append((start, len(text)))
    return [(s, e) for s, e in bounds if text[s:e].strip()]


# -- exact form: spelling and inflection ----------------------------------------------------------------------------
_UK_US = (("aemia", "emia"), ("haem", "hem"), ("paed", "ped"), ("oedema", "edema"), ("oesoph", "esoph"),
          ("oestr", "estr"), ("foet", "fet"), ("diarrhoea", "diarrhea"), ("coeli", "celi"), ("caec", "cec"),
          ("ischaem", "ischem"), ("leukaem", "leukem"), ("anaes", "anes"), ("orthopaed", "orthoped"),
          ("dyspnoea", "dyspnea"), ("apnoea", "apnea"), ("amenorrhoea", "amenorrhea"), ("gynaec", "gynec"),
          ("tumour", "tumor"), ("colour", "color"), ("behaviour", "behavior"), ("odour", "odor"),
          ("humour", "humor"), ("isation", "ization"), ("ised", "ized"), ("ising", "izing"), ("aesthe", "esthe"),
          ("hydrocoele", "hydrocele"), ("coele", "cele"), ("centre", "center"), ("fibre", "fiber"),
          ("litre", "liter"), ("metre", "meter"), ("sulph", "sulf"), ("oeso", "eso"), ("haema", "hema"),
          ("mould", "mold"), ("grey", "gray"), ("oestro", "estro"), ("ageing", "aging"))
_IRREGULAR = {"feet": "foot", "teeth": "tooth", "children": "child", "women": "woman", "men": "man",
              "nevi": "nevus", "naevi": "nevus", "naevus": "nevus", "bronchi": "bronchus", "calculi": "calculus",
              "villi": "villus", "loci": "locus", "nuclei": "nucleus", "emboli": "embolus", "thrombi": "thrombus",
              "alveoli": "alveolus", "fungi": "fungus", "stimuli": "stimulus", "foci": "focus",
              "hallux": "hallux", "digiti": "digitus", "meninges": "meninx", "phalanges": "phalanx",
              "cortices": "cortex", "apices": "apex", "appendices": "appendix", "indices": "index",
              "matrices": "matrix", "vertices": "vertex", "larynges": "larynx", "pharynges": "pharynx",
              "ova": "ovum", "data": "datum", "criteria": "criterion", "diverticula": "diverticulum",
              "labia": "labium", "septa": "septum", "ganglia": "ganglion", "phenomena": "phenomenon",
              "carcinomata": "carcinoma", "stomata": "stoma", "lentigines": "lentigo", "mice": "mouse",
              "epiphyses": "epiphysis", "diaphyses": "diaphysis", "metaphyses": "metaphysis",
              "apophyses": "apophysis", "hypophyses": "hypophysis", "synostoses": "synostosis",
              "exostoses": "exostosis", "anastomoses": "anastomosis", "metastases": "metastasis",
              "paralyses": "paralysis", "crises": "crisis", "analyses": "analysis", "diagnoses": "diagnosis",
              "prostheses": "prosthesis", "ectases": "ectasis", "stenoses": "stenosis", "fibroses": "fibrosis",
              "ankyloses": "ankylosis", "pterygia": "pterygium", "chalazia": "chalazion", "myoclonias": "myoclonia",
              "nares": "nostril", "naris": "nostril", "hernias": "hernia", "herniae": "hernia", "vertebrae": "vertebra",
              "bullae": "bulla", "fistulae": "fistula", "pleurae": "pleura", "sclerae": "sclera",
              "corneae": "cornea", "conjunctivae": "conjunctiva", "papillae": "papilla", "maculae": "macula",
              "tibiae": "tibia", "fibulae": "fibula", "ulnae": "ulna", "scapulae": "scapula", "patellae": "patella",
              "claviculae": "clavicula", "tracheae": "trachea", "aortae": "aorta", "venae": "vena",
              "striae": "stria", "lacunae": "lacuna", "ampullae": "ampulla", "plicae": "plica", "axes": "axis",
              "testes": "testis", "pubes": "pubis", "bases": "base", "diseases": "disease", "cases": "case",
              "phases": "phase", "doses": "dose", "noses": "nose", "species": "species", "series": "series"}
# Words ending in s that are singular.
_SINGULAR_S = frozenset({"lens", "pes", "ascites", "diabetes", "herpes", "rickets", "measles", "mumps", "biceps",
                         "triceps", "pancreas", "thorax", "pectus", "situs", "iris", "pelvis", "testis", "axis",
                         "always", "plus", "bus", "gas", "this", "its", "is", "was", "has", "us", "yes", "thus",
                         "less", "across", "various", "news", "physics", "genetics", "aphthous", "status", "mucus",
                         "rhesus", "corpus", "fetus", "uterus", "nevus", "hiatus", "meatus", "stratus", "humerus",
                         "bronchus", "plexus", "sinus", "hallucis", "pubis", "cutis", "tinnitus", "strabismus",
                         "hirsutism", "clubfoot", "nystagmus", "hypospadias", "epispadias", "syndactylys", "pubes",
                         "naris", "nares", "adnexa", "genitalia", "facies", "series", "species", "cervix",
                         "alopecia", "anus", "ileus", "venous", "chorea", "cyanosis", "lupus", "virus", "calculus",
                         "oris", "abdominis", "capitis", "colitis", "arthritis", "dermatitis", "mellitus", "insipidus",
                         "vas", "bis", "has", "does", "gonadotropins", "menses", "feces", "faeces", "nates",
                         "ductus", "os", "glans", "ileus", "tarsus", "talus", "hamulus", "digitus", "crus"})


@lru_cache(maxsize=200_000)
def exact_form(word: str) -> str:
    if len(word) == 1:
        return word  # a capital letter names a type ("Type A brachydactyly"); the article "a" stays a stopword
    w = unicodedata.normalize("NFKD", word)
    w = "".join(c for c in w if not unicodedata.combining(c)).lower()
    for uk, us in _UK_US:
        if uk in w:
            w = w.replace(uk, us)
    return singular(w)


def singular(w: str) -> str:
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) <= 3 or not w.isalpha() or w in _SINGULAR_S:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("oses", "yses", "eses")) and len(w) > 6:
        return w[:-2] + "is"
    if w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if w.endswith("ae") and len(w) > 5:
        return w[:-1]
    if w.endswith(("omas", "emas", "ias", "mas", "ulas")) and len(w) > 5:
        return w[:-1]  # carcinomas, edemas, dysplasias, traumas, fistulas (but pancreas, gas)
    if w.endswith("s") and not w.endswith(("ss", "us", "is", "ys", "as", "os")):
        return w[:-1]
    return w


# -- root form: derivation and word classes that mean the same finding ----------------------------------------------
# Adjectival endings -> the noun of the finding (longest first).
_DERIVATION = (("trophic", "trophy"), ("pathic", "pathy"), ("cephalic", "cephaly"), ("plegic", "plegia"),
               ("lexic", "lexia"), ("praxic", "praxia"), ("phagic", "phagia"), ("kinetic", "kinesia"),
               ("thalmic", "thalmia"), ("morphic", "morphism"), ("astic", "asia"), ("otic", "osis"),
               ("emic", "emia"), ("oxic", "oxia"), ("capnic", "capnia"), ("uric", "uria"), ("tonic", "tonia"),
               ("taxic", "taxia"), ("phonic", "phonia"), ("trichotic", "trichosis"), ("atous", "a"),
               ("ectatic", "ectasia"), ("esthetic", "esthesia"), ("algic", "algia"), ("pneic", "pnea"),
               ("tensive", "tension"), ("rrhagic", "rrhage"), ("ptotic", "ptosis"), ("dactylous", "dactyly"),
               ("dactylic", "dactyly"), ("somic", "somy"), ("optic", "opia"), ("opic", "opia"))
# Whole words -> a shared root (organ adjectives and their nouns; participles; synonymous heads).
_ROOTS = {
    # organs: adjective -> noun
    "renal": "kidney", "nephric": "kidney", "hepatic": "liver", "cardiac": "heart", "ocular": "eye",
    "ophthalmic": "eye", "ophthalmologic": "eye", "ophthalmological": "eye", "optic": "optic", "cerebral": "brain",
    "pulmonary": "lung", "cutaneous": "skin", "dermal": "skin", "dental": "tooth", "auricular": "ear",
    "aural": "ear", "nasal": "nose", "oral": "mouth", "gastric": "stomach", "cranial": "skull", "vertebral": "vertebra",
    "spinal": "spine", "costal": "rib", "digital": "digit", "finger": "digit", "manual": "hand", "pedal": "foot",
    "palmar": "palm", "plantar": "sole", "ungual": "nail", "labial": "lip", "lingual": "tongue", "gingival": "gum",
    "palatal": "palate", "mandibular": "mandible", "maxillary": "maxilla", "orbital": "orbit", "vesical": "bladder",
    "cystic": "cyst", "splenic": "spleen", "intestinal": "intestine", "bowel": "intestine", "colonic": "colon",
    "rectal": "rectum", "anal": "anus", "uterine": "uterus", "ovarian": "ovary", "testicular": "testis",
    "penile": "penis", "scrotal": "scrotum", "thyroidal": "thyroid", "adrenal": "adrenal", "pituitary": "pituitary",
    "muscular": "muscle", "skeletal": "skeleton", "osseous": "bone", "articular": "joint", "retinal": "retina",
    "corneal": "cornea", "lenticular": "lens", "iridal": "iris", "scleral": "sclera", "palpebral": "eyelid",
    "facial": "face", "cervical": "neck", "thoracic": "thorax", "chest": "thorax", "abdominal": "abdomen",
    "pelvic": "pelvis", "femoral": "femur", "tibial": "tibia", "fibular": "fibula", "humeral": "humerus",
    "radial": "radius", "ulnar": "ulna", "clavicular": "clavicle", "sternal": "sternum", "cardio": "heart",
    "neural": "nerve", "neuronal": "neuron", "vascular": "vessel", "arterial": "artery", "venous": "vein",
    "aortic": "aorta", "tracheal": "trachea", "laryngeal": "larynx", "esophageal": "esophagus", "biliary": "bile",
    "pancreatic": "pancreas", "urethral": "urethra", "ureteral": "ureter", "ureteric": "ureter",
    "genital": "genitalia", "umbilical": "umbilicus", "hair": "hair", "pilar": "hair", "capillary": "capillary",
    "calvarial": "calvaria", "occipital": "occiput", "frontal": "forehead", "mental": "mental",
    "epiphyseal": "epiphysis", "metaphyseal": "metaphysis", "diaphyseal": "diaphysis", "carpal": "carpal",
    "tarsal": "tarsal", "phalangeal": "phalanx", "cerebellar": "cerebellum", "callosal": "callosum",
    "ventricular": "ventricle", "atrial": "atrium", "valvular": "valve", "myocardial": "myocardium",
    "pericardial": "pericardium", "pleural": "pleura", "bronchial": "bronchus", "peritoneal": "peritoneum",
    "hematologic": "blood", "hematological": "blood", "immunologic": "immune", "immunological": "immune",
    "lymphatic": "lymph", "dermatologic": "skin", "dermatological": "skin", "otologic": "ear", "otic": "ear",
    "neurologic": "neurological", "visual": "vision", "volume": "size", "cochlear": "cochlea",
    "patellar": "patella", "macular": "macula", "uvular": "uvula", "scapular": "scapula", "sellar": "sella",
    "mammary": "breast", "vulvar": "vulva", "vaginal": "vagina", "iliac": "ilium", "sacral": "sacrum",
    "coccygeal": "coccyx", "pharyngeal": "pharynx", "myoclonia": "myoclonus", "myoclonic": "myoclonus",
    "neurological": "neurological", "behavioral": "behavior",
    "developmental": "development", "psychomotor": "psychomotor", "motoric": "motor", "mitochondrial": "mitochondria",
    # heads that GSC+-style texts and HPO use for the same grouping terms
    "abnormality": "abnormal", "anomaly": "abnormal", "anomalous": "abnormal", "malformation": "abnormal",
    "malformed": "abnormal", "abnormally": "abnormal", "defect": "abnormal", "defective": "abnormal",
    "dysmorphism": "abnormal", "dysmorphic": "abnormal", "deformity": "abnormal", "deformed": "abnormal",
    "aberration": "abnormal", "aberrant": "abnormal", "disorder": "abnormal", "irregularity": "abnormal",
    # participles and nominalisations
    "thickening": "thick", "thickened": "thick", "thickness": "thick", "shortening": "short", "shortened": "short",
    "shortness": "short", "widening": "wide", "widened": "wide", "broad": "wide", "broadening": "wide",
    "broadened": "wide", "width": "wide", "narrowing": "narrow", "narrowed": "narrow", "enlargement": "large",
    "enlarged": "large", "enlarge": "large", "big": "large", "elongation": "long", "elongated": "long",
    "lengthening": "long", "length": "long", "dilatation": "dilate", "dilation": "dilate", "dilated": "dilate",
    "delayed": "delay", "retardation": "delay", "retarded": "delay", "decreased": "decrease", "reduced": "decrease",
    "reduction": "decrease", "diminished": "decrease", "low": "decrease", "lowered": "decrease",
    "increased": "increase", "elevated": "increase", "elevation": "increase", "high": "increase",
    "raised": "increase", "absence": "absent", "lack": "absent", "lacking": "absent", "missing": "absent",
    "agenesis": "absent", "aplasia": "absent", "aplastic": "absent", "impaired": "impairment", "impair": "impairment",
    "deficient": "deficiency", "deficit": "deficiency", "fused": "fusion", "prominent": "prominence",
    "protruding": "prominence", "protrusion": "prominence", "curved": "curvature", "bowed": "bowing",
    "bowing": "bowing", "obese": "obesity", "deaf": "deafness", "blind": "blindness", "weak": "weakness",
    "stiff": "stiffness", "small": "small", "smaller": "small", "hypoplasia": "hypoplasia", "tall": "tall",
    "recurring": "recurrent", "repeated": "recurrent", "frequent": "recurrent", "infection": "infection",
    "calcified": "calcification", "ossified": "ossification", "fractured": "fracture", "dislocated": "dislocation",
    "luxation": "dislocation", "subluxed": "subluxation", "swollen": "swelling", "painful": "pain", "ache": "pain",
    "hypopigmented": "hypopigmentation", "hyperpigmented": "hyperpigmentation", "pigmented": "pigmentation",
    "atrophied": "atrophy", "atrophic": "atrophy", "sclerosed": "sclerosis", "cleft": "cleft", "clefting": "cleft",
    "inherited": "inheritance", "inheritance": "inheritance", "transmitted": "inheritance", "transmission":
    "inheritance", "dominantly": "dominant", "recessively": "recessive", "hearing": "hearing", "tumour": "tumor",
    "neoplasm": "tumor", "neoplasia": "tumor", "tumor": "tumor", "seizure": "seizure", "convulsion": "seizure",
    "fit": "seizure", "epileptic": "seizure", "stature": "stature", "height": "stature", "mentally": "mental",
    "intellectually": "intellectual", "cognitive": "cognitive", "progressively": "progressive",
    "variability": "variable", "unilateral": "unilateral", "bilaterally": "bilateral", "hypotonic": "hypotonia",
}


@lru_cache(maxsize=200_000)
def root_form(exact: str) -> str:
    if exact in _ROOTS:
        return _ROOTS[exact]
    if len(exact) > 5:
        for suffix, noun in _DERIVATION:
            if exact.endswith(suffix) and len(exact) - len(suffix) >= 3:
                word = exact[: -len(suffix)] + noun
                return _ROOTS.get(word, word)
    return exact
