"""Install side of LowKey's browser integration (issue 11).

``lowkey install`` / ``lowkey uninstall`` register the native-messaging host with Chrome,
Chromium, Edge, Brave and Firefox and the daemon's start at login; ``installers/install.sh`` and
``installers/install.ps1`` are the thin scripts a user runs. :mod:`lowkey_installers.plan` says
what to write (pure, for any OS), :mod:`lowkey_installers.apply` does and undoes it on this
machine, :mod:`lowkey_installers.cli` is the command line. Nothing here imports torch or the models.
"""
