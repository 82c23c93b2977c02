#!/bin/sh
# Entry point of theano-det's image: a command runs through `theano-det run` (hash
# seed, RNG seeds, deterministic THEANO_FLAGS), seeded from THEANO_DET_SEED.
#   docker run --gpus all -e THEANO_DET_SEED=7 -v "$PWD":/work IMAGE python train.py
set -eu

refuse_seed() {
  echo "theano-det: THEANO_DET_SEED must be an integer from 0 to 4294967295, not '$seed'" >&2
  echo "hint: docker run -e THEANO_DET_SEED=7 ... (the image's default is 0)" >&2
  exit 2
}
seed=${THEANO_DET_SEED-0}
case $seed in
  '' | *[!0-9]*) refuse_seed ;;
esac
digits=${seed#"${seed%%[!0]*}"} # without leading zeros
if [ "${#digits}" -gt 10 ] || { [ "${#digits}" -eq 10 ] && [ "$digits" -gt 4294967295 ]; }; then
  refuse_seed
fi

# Run with `docker run --user UID:GID` (a project owned by another uid), the user may
# have no writable home; Python tools that keep files in ~ then get a fresh one.
home_note=
if [ ! -w "${HOME:-/nonexistent}" ]; then
  HOME=$(mktemp -d)
  export HOME
  home_note=", in a temporary home, lost at exit"
fi

# Theano's compile cache: /cache when it is writable (Docker; a volume there keeps compiled
# ops between containers), else Theano's own ~/.theano (Apptainer runs the image
# read-only with the user's home), unless THEANO_FLAGS names one already.
case ",${THEANO_FLAGS-}," in
  *,base_compiledir=*) ;;
  *)
    if [ -d /cache ] && [ -w /cache ]; then
      THEANO_FLAGS="base_compiledir=/cache/theano${THEANO_FLAGS:+,$THEANO_FLAGS}"
      export THEANO_FLAGS
    else
      echo "theano-det: /cache is not writable here: Theano's compile cache is $HOME/.theano$home_note" \
        "(THEANO_FLAGS=base_compiledir=DIR puts it elsewhere)" >&2
    fi
    ;;
esac

exec theano-det run --seed "$seed" -- "$@"
