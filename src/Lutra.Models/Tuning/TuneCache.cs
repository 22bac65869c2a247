using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lutra.Models.Tuning;

/// <summary>
/// What a tuning decision depends on: the model file, the CPU and instruction set (and the build of the kernels,
/// which <see cref="KernelSelector"/> adds to <see cref="Cpu"/>), the thread count, the weight shape, and the
/// candidate kernels (a new kernel changes the list, so older decisions stop matching).
/// </summary>
public sealed record TuneKey(string Model, string Cpu, int Threads, string Shape, IReadOnlyList<string> Candidates)
{
    public bool Equals(TuneKey? other) =>
        other is not null && Model == other.Model && Cpu == other.Cpu && Threads == other.Threads && Shape == other.Shape
        && Candidates.SequenceEqual(other.Candidates);

    public override int GetHashCode() => HashCode.Combine(Model, Cpu, Threads, Shape, Candidates.Count);
}

/// <summary>
/// A tuned shape: its candidates cheapest first, with the decode time of each (best round) and, where it was timed,
/// the time per prompt token (see <see cref="CandidateTiming"/>).
/// </summary>
public sealed record TuneDecision(TuneKey Key, IReadOnlyList<string> Ranking, IReadOnlyList<double> Microseconds,
    IReadOnlyList<double?>? PromptMicroseconds = null);

/// <summary>
/// Tuning decisions kept across runs in one small JSON file. A missing, unreadable or corrupt file reads as
/// empty (the shapes are tuned again); a write merges with what is on disk at that moment and replaces the file
/// by renaming a complete temporary file over it, so a reader never sees a torn file and concurrent processes at
/// worst drop each other's newest entries (tuned again next time), never corrupt them. Write failures are ignored.
/// </summary>
public sealed class TuneCache(string path)
{
    /// <summary>Overrides the cache file location; <c>off</c> keeps no cache.</summary>
    public const string PathVariable = "LUTRA_TUNE_CACHE";

    /// <summary>Oldest decisions beyond this many are dropped at write, so stale models do not grow the file forever.</summary>
    public const int MaxDecisions = 512;

    // 2: rankings by decode plus prompt cost (version 1 ranked by decode alone and is tuned again).
    private const int FormatVersion = 2;

    public string Path { get; } = path;

    /// <summary>
    /// <c>$LUTRA_TUNE_CACHE</c> (null when it is <c>off</c>), else lutra/tune.json under <c>$XDG_CACHE_HOME</c> or
    /// ~/.cache; null when there is no home directory either.
    /// </summary>
    public static string? DefaultPath()
    {
        var forced = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrWhiteSpace(forced))
            return forced.Trim().Equals("off", StringComparison.OrdinalIgnoreCase) ? null : forced;
        var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrWhiteSpace(root) || !System.IO.Path.IsPathRooted(root))
        {
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home))
                return null;
            root = System.IO.Path.Combine(home, ".cache");
        }
        return System.IO.Path.Combine(root, "lutra", "tune.json");
    }

    /// <summary>The stored decision for <paramref name="key"/>, or null.</summary>
    public TuneDecision? Find(TuneKey key) => Read().FirstOrDefault(d => d.Key.Equals(key));

    /// <summary>Every well-formed decision in the file; empty when the file is missing, unreadable or corrupt.</summary>
    public IReadOnlyList<TuneDecision> Read()
    {
        var document = Load();
        if (document?.Decisions is null)
            return [];
        return document.Decisions.Select(ToDecision).OfType<TuneDecision>().ToArray();
    }

    /// <summary>Adds (or replaces) <paramref name="decisions"/>; false when the file could not be written.</summary>
    public bool Store(IReadOnlyCollection<TuneDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(decisions);
        if (decisions.Count == 0)
            return true;
        var now = DateTime.UtcNow;
        var kept = (Load()?.Decisions ?? [])
            .Where(r => ToDecision(r) is { } d && !decisions.Any(n => n.Key.Equals(d.Key)))
            .Concat(decisions.Select(d => ToRecord(d, now)))
            .OrderBy(r => r.Written)
            .ToList();
        if (kept.Count > MaxDecisions)
            kept.RemoveRange(0, kept.Count - MaxDecisions);
        var document = new TuneCacheDocument { Version = FormatVersion, Decisions = kept };
        string? temporary = null;
        try
        {
            var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;
            Directory.CreateDirectory(directory);
            temporary = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(Path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
            File.WriteAllBytes(temporary, JsonSerializer.SerializeToUtf8Bytes(document, TuneCacheJson.Default.TuneCacheDocument));
            File.Move(temporary, Path, overwrite: true);
            temporary = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            return false;
        }
        finally
        {
            if (temporary is not null)
                TryDelete(temporary);
        }
    }

    private TuneCacheDocument? Load()
    {
        try
        {
            if (!File.Exists(Path))
                return null;
            var document = JsonSerializer.Deserialize(File.ReadAllBytes(Path), TuneCacheJson.Default.TuneCacheDocument);
            return document?.Version == FormatVersion ? document : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException or ArgumentException)
        {
            return null;
        }
    }

    private static TuneDecision? ToDecision(TuneRecord? r)
    {
        if (r is null || r.Model is null || r.Cpu is null || r.Shape is null || r.Candidates is null || r.Ranking is null
            || r.Microseconds is null || r.Ranking.Count == 0 || r.Ranking.Count != r.Microseconds.Count
            || (r.PromptMicroseconds is not null && r.PromptMicroseconds.Count != r.Ranking.Count)
            || r.Candidates.Any(c => c is null) || r.Ranking.Any(c => c is null || !r.Candidates.Contains(c)))
            return null;
        return new TuneDecision(new TuneKey(r.Model, r.Cpu, r.Threads, r.Shape, r.Candidates), r.Ranking, r.Microseconds, r.PromptMicroseconds);
    }

    private static TuneRecord ToRecord(TuneDecision d, DateTime written) => new()
    {
        Model = d.Key.Model,
        Cpu = d.Key.Cpu,
        Threads = d.Key.Threads,
        Shape = d.Key.Shape,
        Candidates = [.. d.Key.Candidates],
        Ranking = [.. d.Ranking],
        Microseconds = [.. d.Microseconds],
        PromptMicroseconds = d.PromptMicroseconds is null ? null : [.. d.PromptMicroseconds],
        Written = written,
    };

    private static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temporary file is harmless.
        }
    }
}

internal sealed class TuneCacheDocument
{
    public int Version { get; set; }
    public List<TuneRecord>? Decisions { get; set; }
}

internal sealed class TuneRecord
{
    public string? Model { get; set; }
    public string? Cpu { get; set; }
    public int Threads { get; set; }
    public string? Shape { get; set; }
    public List<string>? Candidates { get; set; }
    public List<string>? Ranking { get; set; }
    public List<double>? Microseconds { get; set; }
    public List<double?>? PromptMicroseconds { get; set; }
    public DateTime Written { get; set; }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(TuneCacheDocument))]
internal sealed partial class TuneCacheJson : JsonSerializerContext;
