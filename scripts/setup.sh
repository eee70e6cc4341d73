#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the pinned requirements and the project.
# Idempotent: re-running after a requirements change brings the venv up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.icbridge-installed
want=$(cat requirements.txt constraints/constraints-3.11.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt -c constraints/constraints-3.11.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
# The simulators (include/icbsim: the demo, the tests, `python -m icbsim`) are not in the icbridge
# wheel: a .pth puts include/ on the venv's sys.path, whatever layout the editable install uses.
.venv/bin/python -c 'import pathlib, sys, sysconfig
pth = pathlib.Path(sysconfig.get_paths()["purelib"]) / "icbsim-dev.pth"
if not pth.exists() or pth.read_text() != sys.argv[1] + "\n":
    pth.write_text(sys.argv[1] + "\n")' "$PWD/include"
.venv/bin/python -c "import icbsim" || { echo "setup.sh: icbsim (include/icbsim) does not import" >&2; exit 1; }
# Headless Debian chromium + chromedriver for tests/e2e/test_balance_all_browser.py (never a downloaded
# browser). Installed only where we may (root) and want to (CI, or ICBRIDGE_INSTALL_BROWSER=1);
# elsewhere the browser test skips when they are missing.
# Debian's vsftpd and openssh-server for tests/integration/transfer/test_transfer_real.py (real servers, not our
# simulators): installed the same way; elsewhere those tests skip with the reason.
if { [ -n "${CI:-}" ] || [ -n "${ICBRIDGE_INSTALL_BROWSER:-}" ]; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  want=()
  { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || want+=(chromium chromium-driver)
  [ -x /usr/sbin/vsftpd ] || want+=(vsftpd)
  [ -x /usr/sbin/sshd ] || want+=(openssh-server)
  if [ ${#want[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
  fi
fi
