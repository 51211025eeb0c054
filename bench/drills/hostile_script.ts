/**
 * A hostile training script, one behaviour per mode (its first argument). Shared by the
 * hostile-scripts drill and its small version in tests/e2e_hostile_output_test.ts.
 */

/** The Python the training scripts run on (sklearn & co. are not needed here). */
export const HOSTILE_PYTHON = "/usr/bin/python3";

export const HOSTILE_PY = `import json, os, subprocess, sys, time
mode = sys.argv[1]
arg = sys.argv[2:]
raw = sys.stdout.buffer
def write(text):
    raw.write(text.encode("utf-8", "surrogatepass"))
def say(**message):
    write("@@trainer " + json.dumps(message) + "\\n")
def artifact(path=None):
    path = path or os.environ["TRAIN_ARTIFACT_PATH"]
    with open(os.environ["TRAIN_ARTIFACT_PATH"], "w") as f:
        f.write("model")
    say(event="artifact", path=path)
if mode == "flood":  # N progress lines as fast as possible, a log line every K
    n, every = int(arg[0]), int(arg[1])
    for i in range(1, n + 1):
        write('@@trainer {"event":"progress","step":%d,"total":%d}\\n' % (i, n))
        if i % every == 0:
            write("log %d\\n" % i)
    artifact()
elif mode == "endless":  # progress lines until stopped
    i = 0
    while True:
        i += 1
        write('@@trainer {"event":"progress","step":%d}\\n' % i)
elif mode == "deep":  # one protocol line nested N levels deep
    d = int(arg[0])
    write('@@trainer {"event":"metrics","metrics":{"m":' + "[" * d + "1" + "]" * d + "}}\\n")
    artifact()
elif mode == "surrogate":  # an escaped lone surrogate, and a long line of emoji
    write('@@trainer {"event":"progress","step":1,"total":1,"message":"a\\\\ud800b"}\\n')
    write("x" + "\\U0001F600" * 40000 + "\\n")
    artifact()
elif mode == "huge":  # one line of N bytes
    write("h" * int(arg[0]) + "\\n")
    artifact()
elif mode == "bad_artifact":  # reports the artifact path given, then fails
    say(event="artifact", path=arg[0])
    sys.exit(3)
elif mode == "symlink_model":  # the model file is a symlink to the file given
    os.symlink(arg[0], os.environ["TRAIN_ARTIFACT_PATH"])
    say(event="artifact", path=os.environ["TRAIN_ARTIFACT_PATH"])
elif mode == "daemon":  # leaves a process in its own session, then completes
    subprocess.Popen(["setsid", "sleep", arg[0]], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    artifact()
elif mode == "ok":
    write("fine\\n")
    artifact()
raw.flush()
`;
