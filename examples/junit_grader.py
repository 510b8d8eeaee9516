"""A JUnit XML grader for the two-layer backprop question, for CodeGrade's Unit Test step,
GitHub Actions or any CI that reads JUnit: no server, no network.

CodeGrade runs the command in the student's directory and reads the XML at
$CG_JUNIT_XML_LOCATION (its score: the fraction of test cases passed).  One test case per
graded array, failing with the mistake's diagnosis; a crashing backprop, or arrays the
service cannot read, is one failed test case that says why.

    python examples/junit_grader.py --student examples/student_solution.py --out junit.xml
"""

import argparse
import os
from xml.etree import ElementTree

from backprop_question import StudentError, check, exercise, submission


def failed_suite(message):
    """A testsuite of one failed test case: the student's code could not be graded."""
    suite = ElementTree.Element("testsuite", name="gradient-check", tests="1", failures="1")
    case = ElementTree.SubElement(suite, "testcase", name="backprop", classname="gradient-check")
    ElementTree.SubElement(case, "failure", message=message, type="student_error").text = message
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", default="solution.py")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")))
    parser.add_argument("--out", default=os.environ.get("CG_JUNIT_XML_LOCATION", "junit.xml"))
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp"))
    args = parser.parse_args()

    problem = exercise(args.seed)
    try:
        report = check(problem, submission(problem, args.student), "junit", args.work)
    except StudentError as error:
        report = failed_suite(str(error))
    with open(args.out, "w") as file:
        file.write(report)


if __name__ == "__main__":
    main()
