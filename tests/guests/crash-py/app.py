"""A Python guest with a bug: its thumbnail handler raises an exception it
does not catch, after printing a line of its own. The e2e suite checks that
the job fails with the traceback's last line, escaped."""

import corral_guest as corral


def lookup(camera):
    print("looking up \x1b[31mthe camera\x1b[0m")
    return {"cam-0001": "lobby"}[camera]


class Crash(corral.Integration):
    def thumbnail(self, job):
        lookup(job.require_device() + "\nforged line")


WitWorld = corral.export(Crash)
