using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Models.Tuning;

/// <summary>How a weight shape got its kernel.</summary>
public enum KernelChoiceSource
{
    /// <summary>Only the GGUF-layout kernel can multiply it (no repacking kernel exists or accepts it).</summary>
    OnlyCandidate,
    /// <summary><see cref="KernelPreference.Mad"/> or <see cref="KernelPreference.Repacked"/> decided.</summary>
    Preference,
    /// <summary>Timed at this load.</summary>
    Tuned,
    /// <summary>Timed at an earlier load of the same file on this CPU at this thread count (the tune cache).</summary>
    Cached,
    /// <summary>Tuning off and nothing cached: the first accepting repacking kernel, else MAD.</summary>
    Untuned,
}

/// <summary>
/// One candidate's times (the best of the tuner's rounds, each a median), in microseconds: one decode product of
/// the whole matrix, and, for the candidates close enough to the fastest decode to be timed on a prompt batch,
/// the batch's time per token (null for the others).
/// </summary>
public sealed record CandidateTiming(MatVecKernel Kernel, double Microseconds, double? PromptMicroseconds = null);

/// <summary>The kernel picked for every weight matrix of one (type, rows, columns).</summary>
public sealed record KernelChoice(
    GgmlType Type,
    int Rows,
    int Columns,
    int MatrixCount,
    MatVecKernel Kernel,
    KernelChoiceSource Source,
    IReadOnlyList<CandidateTiming> Timings)
{
    /// <summary>"TQ2_0 8192x2048": type, then rows (outputs) x columns (inputs).</summary>
    public string Shape => ShapeName(Type, Rows, Columns);

    public static string ShapeName(GgmlType type, int rows, int columns) => $"{QuantTypes.Get(type).Name} {rows}x{columns}";
}

/// <summary>
/// The kernel choices of a loaded model and what choosing them cost: <see cref="Elapsed"/> includes repacking
/// every matrix for its kernel (or mapping it from the repack cache) and writing the repack cache;
/// <see cref="Tuning"/> is the part spent timing candidates (and repacking each tuned shape's first matrix for the
/// candidates that lost). <see cref="RepackCache"/> is null when no repack cache was configured.
/// </summary>
public sealed record KernelSelection(
    KernelPreference Preference,
    IReadOnlyList<KernelChoice> Choices,
    TimeSpan Elapsed,
    TimeSpan Tuning,
    string? CachePath,
    RepackCacheReport? RepackCache = null)
{
    /// <summary>Shapes timed at this load (not from the cache).</summary>
    public int TunedShapes => Choices.Count(c => c.Source == KernelChoiceSource.Tuned);
}
