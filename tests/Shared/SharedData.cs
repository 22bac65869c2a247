namespace Lutra.Tests;

/// <summary>
/// Locates <c>../shared</c> (llama.cpp's golden outputs and the tiny models) beside the repository.
/// Tests that need it call <see cref="Require"/>, which skips the test with a message that says so
/// when the folder is absent, e.g. on a user's fresh clone. <c>LUTRA_SHARED</c> overrides the location.
/// </summary>
public static class SharedData
{
    private static readonly Lazy<string?> Root = new(Find);

    public static string? Directory => Root.Value;

    /// <summary>Full path of a file under shared/, or skips the calling test when shared/ is missing.</summary>
    public static string Require(string relativePath)
    {
        var root = Root.Value;
        if (root is null)
            Assert.Skip("../shared (llama.cpp reference data) is not present beside the repository; this test needs it.");
        var path = Path.Combine(root, relativePath);
        if (!File.Exists(path) && !System.IO.Directory.Exists(path))
            Assert.Skip($"shared data file '{relativePath}' is missing from {root}.");
        return path;
    }

    public static string Model(string fileName) => Require(Path.Combine("models", fileName));

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("LUTRA_SHARED");
        if (!string.IsNullOrEmpty(env))
            return System.IO.Directory.Exists(env) ? Path.GetFullPath(env) : null;
        // Walk up from the test binary to the repository root (the folder holding Lutra.slnx).
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Lutra.slnx")))
            {
                var shared = Path.Combine(dir.FullName, "..", "shared");
                return System.IO.Directory.Exists(shared) ? Path.GetFullPath(shared) : null;
            }
        }
        return null;
    }
}
