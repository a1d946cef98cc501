# Sourced by tests/run.sh: Debian's Chromium and ChromeDriver for the
# console's browser tests (tests/tests/e2e/console.rs). Installs the packages
# `chromium` and `chromium-driver` when either program is missing (root
# apt-get), and exports CORRAL_CHROMIUM and CORRAL_CHROMEDRIVER. Without them
# and without root apt-get it says so in one line; the browser tests then
# fail, unless CORRAL_ALLOW_SKIP is set.

browser_missing() {
  ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null
}

if browser_missing; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing Chromium and ChromeDriver from Debian's packages"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "tests/run.sh: apt-get could not install chromium and chromium-driver"
  else
    echo "tests/run.sh: no chromium or chromedriver, and no root apt-get to install them: the console's browser tests will fail (CORRAL_ALLOW_SKIP=1 skips them)"
  fi
fi
if ! browser_missing; then
  CORRAL_CHROMIUM=${CORRAL_CHROMIUM:-$(command -v chromium)}
  CORRAL_CHROMEDRIVER=${CORRAL_CHROMEDRIVER:-$(command -v chromedriver)}
  export CORRAL_CHROMIUM CORRAL_CHROMEDRIVER
fi
