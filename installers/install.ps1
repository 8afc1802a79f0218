# Install LowKey in your browsers (Windows): sets LowKey up in .\.venv if it is not yet, then
# registers the native-messaging host with Chrome, Chromium, Edge, Brave and Firefox (registry,
# HKCU) and the daemon's start at login (HKCU\...\CurrentVersion\Run).
#   powershell -ExecutionPolicy Bypass -File installers\install.ps1             # for you
#   powershell -ExecutionPolicy Bypass -File installers\install.ps1 --system    # all users (administrator)
#   powershell -ExecutionPolicy Bypass -File installers\install.ps1 --dry-run   # print what it would write
# Remove it again: .venv\Scripts\lowkey.exe uninstall [--system]
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)

$lowkey = Join-Path ".venv" "Scripts\lowkey.exe"
if (-not (Test-Path $lowkey)) {
    Write-Host "LowKey is not set up in $(Get-Location)\.venv yet: setting it up first"
    $python = if ($env:PYTHON) { $env:PYTHON } else { "py" }
    $torch = if ($env:LOWKEY_TORCH) { $env:LOWKEY_TORCH -split " " } else { @("torch==2.14.1", "torchvision==0.29.1") }
    if (-not (Test-Path ".venv\Scripts\python.exe")) { & $python -m venv .venv; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    $pip = @("-m", "pip", "--disable-pip-version-check", "-q")
    & .venv\Scripts\python.exe @pip install @torch; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    & .venv\Scripts\python.exe @pip install -e ".[dev]"; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    & $lowkey models fetch; if ($LASTEXITCODE) { exit $LASTEXITCODE }
}
& $lowkey install @args
exit $LASTEXITCODE
