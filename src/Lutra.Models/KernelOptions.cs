using Lutra.Core.Kernels;
using Lutra.Models.Tuning;

namespace Lutra.Models;

/// <summary>Which kernel multiplies each weight matrix, among the GGUF-layout kernel and the repacking kernels.</summary>
public enum KernelPreference
{
    /// <summary>
    /// Per weight shape, the fastest of the GGUF-layout kernel and every repacking kernel that accepts the matrix,
    /// timed at load (<see cref="KernelOptions.Tune"/>) or taken from the tune cache.
    /// </summary>
    Auto,

    /// <summary>Only the kernels that multiply-add over the GGUF block layout in place (no repacked copies).</summary>
    Mad,

    /// <summary>The first repacking kernel that accepts each matrix (lookup-table or row-interleaved), else MAD.</summary>
    Repacked,

    /// <summary>The first lookup-table kernel that accepts each matrix, else MAD (A/B runs of the table kernels).</summary>
    Lut,

    /// <summary>The first row-interleaved multiply-add kernel that accepts each matrix, else MAD.</summary>
    Interleaved,
}

/// <summary>
/// Load-time kernel choice. It is fixed per loaded model, not per context: every context shares the model's
/// weights and their repacked copies. <c>LUTRA_KERNEL=auto|mad|repacked|lut|interleaved</c> sets the default preference, so a
/// whole test suite can run once per choice; <c>LUTRA_REPACK=0</c> still removes every repacking kernel (= MAD).
/// </summary>
public sealed record KernelOptions
{
    public const string PreferenceVariable = "LUTRA_KERNEL";

    /// <summary>The default <see cref="RepackCacheDirectory"/>; unset or <c>off</c> keeps no repack cache.</summary>
    public const string RepackCacheVariable = "LUTRA_REPACK_CACHE";

    public KernelPreference Preference { get; init; } = DefaultPreference();

    /// <summary>
    /// With <see cref="KernelPreference.Auto"/>: time the candidates of each weight shape at load when the tune
    /// cache has no decision for it. False never times: a cached decision still applies, otherwise the order
    /// of <see cref="KernelTable.RepackingKernels"/> does (the first accepting repacking kernel, else MAD).
    /// </summary>
    public bool Tune { get; init; } = true;

    /// <summary>Threads the tuner times each candidate with: the count the model will run at.</summary>
    public int Threads { get; init; } = 1;

    /// <summary>The tune cache file; null keeps no cache. Default: <see cref="TuneCache.DefaultPath"/>.</summary>
    public string? CachePath { get; init; } = TuneCache.DefaultPath();

    /// <summary>
    /// Directory of the on-disk repack cache (<see cref="RepackCache"/>): repacked weights are written there once and
    /// read back on later loads instead of repacked. Null (the default, unless <c>$LUTRA_REPACK_CACHE</c> names a
    /// directory) keeps none: the cache costs as much disk as the repacked matrices.
    /// </summary>
    public string? RepackCacheDirectory { get; init; } = RepackCache.DefaultDirectory();

    /// <summary>Parses auto, mad, repacked, lut or interleaved (any case); ArgumentException names the accepted values.</summary>
    public static KernelPreference ParsePreference(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Trim().ToUpperInvariant() switch
        {
            "AUTO" => KernelPreference.Auto,
            "MAD" => KernelPreference.Mad,
            "REPACKED" => KernelPreference.Repacked,
            "LUT" => KernelPreference.Lut,
            "INTERLEAVED" => KernelPreference.Interleaved,
            _ => throw new ArgumentException($"{source}: '{text}' is not a kernel choice (auto, mad, repacked, lut or interleaved)"),
        };
    }

    private static KernelPreference DefaultPreference()
    {
        var forced = Environment.GetEnvironmentVariable(PreferenceVariable);
        return string.IsNullOrWhiteSpace(forced) ? KernelPreference.Auto : ParsePreference(forced, PreferenceVariable);
    }
}
