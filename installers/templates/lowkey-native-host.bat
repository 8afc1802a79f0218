@echo off
rem Written by `lowkey install`; `lowkey uninstall` removes it.
rem The browser starts LowKey's native host through this file (Windows needs an executable path).
"$python" -m lowkey_native_host %*
