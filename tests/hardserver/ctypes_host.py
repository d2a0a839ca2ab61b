"""A host that loads a PKCS#11 library with plain ctypes, as any Python program may, under whatever
Python runs it; prints one JSON line: the return codes, the library description and the time
C_Initialize took. Used by the one-library tests under Python 3.11 (the module's own), 3.12 and 3.13.

    python ctypes_host.py LIBRARY
"""

import ctypes
import json
import sys
import time


class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_INFO(ctypes.Structure):
    _fields_ = [("cryptokiVersion", CK_VERSION), ("manufacturerID", ctypes.c_char * 32), ("flags", ctypes.c_ulong),
                ("libraryDescription", ctypes.c_char * 32), ("libraryVersion", CK_VERSION)]


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1])
    for name in ("C_Initialize", "C_GetInfo", "C_GetSlotList", "C_Finalize"):
        getattr(lib, name).restype = ctypes.c_ulong
    start = time.monotonic()
    result = {"initialize": lib.C_Initialize(None)}
    result["seconds"] = time.monotonic() - start
    info = CK_INFO()
    result["info"] = lib.C_GetInfo(ctypes.byref(info))
    result["description"] = info.libraryDescription.decode().rstrip()
    count = ctypes.c_ulong(0)
    result["slot_list"] = lib.C_GetSlotList(ctypes.c_ubyte(0), None, ctypes.byref(count))
    result["slots"] = count.value
    result["finalize"] = lib.C_Finalize(None)
    result["python"] = "%d.%d" % sys.version_info[:2]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
