using System.Runtime.CompilerServices;

namespace Lutra.Tests;

/// <summary>
/// Process-wide settings of every test run. Models loaded with default options would otherwise record their
/// kernel tuning in the user's cache (~/.cache/lutra/tune.json), or repacked weights in a LUTRA_REPACK_CACHE the
/// user set for their own runs: a test run must leave the user's files alone. Tests of the caches pass their own
/// paths. An explicit LUTRA_TUNE_CACHE is respected.
/// </summary>
internal static class TestProcessSetup
{
    [ModuleInitializer]
    internal static void KeepCachesOutOfUserFiles()
    {
        if (Environment.GetEnvironmentVariable("LUTRA_TUNE_CACHE") is null)
            Environment.SetEnvironmentVariable("LUTRA_TUNE_CACHE", "off");
        Environment.SetEnvironmentVariable("LUTRA_REPACK_CACHE", "off");
    }
}
