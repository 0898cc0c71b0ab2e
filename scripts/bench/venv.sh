#!/usr/bin/env bash
# The Python environment of the benchmark peers (never used at run time), cached per user.
source "$(dirname "$0")/../env.sh"
VENV=$IBEX_CACHE/venv
if ! "$VENV/bin/python" -c "import onnxruntime, tokenizers, numpy" 2>/dev/null ||
   [ "$("$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null)" != "1.32.0" ]; then
  log "creating the benchmark peer environment in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --find-links "$IBEX_CACHE/wheels" onnxruntime==1.32.0 "tokenizers==0.22.2" "numpy==2.4.6"
fi
echo "$VENV/bin/python"
