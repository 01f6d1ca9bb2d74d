#!/usr/bin/env bash
# One-command setup: R and the reference packages from Debian, then .venv with the
# project editable and its test extras. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# lmerTest and pbkrtest: the Satterthwaite and Kenward-Roger references (issue 15)
R_PKGS="r-base-core r-cran-lme4 r-cran-ordinal r-cran-mgcv r-cran-glmmtmb r-cran-gamm4 r-cran-lmertest r-cran-pbkrtest"

need_r=0
for p in $R_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_r=1
done
if [ "$need_r" = 1 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $R_PKGS
fi

# rpy2 3.6.x does not load against R 4.2 (undefined symbol R_getVar); 3.5.17 does.
R_MINOR=$(Rscript -e 'cat(R.version$major, ".", strsplit(R.version$minor, "[.]")[[1]][1], sep="")')
case "$R_MINOR" in
    4.0|4.1|4.2|4.3) RPY2="rpy2==3.5.17" ;;
    *) RPY2="rpy2>=3.6,<3.7" ;;
esac

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.glmmbench-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $RPY2"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[test,r]" "$RPY2"
    echo "$want" > "$stamp"
fi
.venv/bin/python -c "import rpy2.robjects" || { echo "rpy2 does not load against R $R_MINOR" >&2; exit 1; }
echo "setup ok: R $R_MINOR, $RPY2"
