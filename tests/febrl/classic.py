"""The classic unsupervised pipeline on FEBRL3, to print beside ours.

`recordlinkage`'s documented recipe, with blocking widened to a union
(records equal on given name, surname, birth date or postcode): compare
given name and birth date, suburb and state exactly and surname and street
by Jaro-Winkler >= 0.85, classify with the ECM (expectation-conditional
maximisation) Fellegi-Sunter classifier, no labels; the labels only score
the pairs it returns. Not part of `.ci/run` (it needs pandas):

    python3 -m venv /tmp/rl && /tmp/rl/bin/pip install recordlinkage
    /tmp/rl/bin/python tests/febrl/classic.py
"""

import pathlib

import pandas
import recordlinkage

# The union of these blocks: records equal on any one are compared.
BLOCKS = ["given_name", "surname", "date_of_birth", "postcode"]
DATASET = pathlib.Path(__file__).parent.parent / "data" / "febrl" / "dataset3.csv"


def main():
    records = pandas.read_csv(DATASET, dtype=str, skipinitialspace=True).fillna("")
    records = records.set_index("rec_id")
    person = records.index.str.split("-").str[1]

    indexer = recordlinkage.Index()
    for field in BLOCKS:
        indexer.block(field)
    candidates = indexer.index(records)

    compare = recordlinkage.Compare()
    compare.exact("given_name", "given_name", label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("suburb", "suburb", label="suburb")
    compare.exact("state", "state", label="state")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
    features = compare.compute(candidates, records)

    found = recordlinkage.ECMClassifier().fit_predict(features)

    by_id = dict(zip(records.index, person))
    right = sum(1 for a, b in found if by_id[a] == by_id[b])
    sizes = pandas.Series(person).value_counts()
    truth = int((sizes * (sizes - 1) // 2).sum())
    blocked = sum(1 for a, b in candidates if by_id[a] == by_id[b])
    precision, recall = right / len(found), right / truth
    f1 = 2 * precision * recall / (precision + recall)
    print(
        f"FEBRL3, recordlinkage {recordlinkage.__version__} (blocks {'/'.join(BLOCKS)}, ECM): "
        f"{truth} true pairs, blocking recall {blocked / truth:.3f} ({len(candidates)} blocked pairs); "
        f"{len(found)} pairs, precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f}"
    )


if __name__ == "__main__":
    main()
