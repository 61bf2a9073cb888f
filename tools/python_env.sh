# Sourced by the launch scripts (dist_train.sh, dist_test.sh, slurm_train.sh):
# sets PYTHON to the interpreter they start. $PYTHON wins when set; else the
# project's virtual environment (tools/install.sh: $CONVSEG_VENV, by default
# .venv in the repository, relative paths taken from the repository); else
# the `python` on PATH.
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$TOOLS")
if [ -z "${PYTHON:-}" ]; then
    VENV=${CONVSEG_VENV:-.venv}
    case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
    if [ -x "$VENV/bin/python" ]; then
        PYTHON="$VENV/bin/python"
    else
        PYTHON=python
    fi
fi
