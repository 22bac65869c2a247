using System.Diagnostics;

namespace Lutra.Core.Diagnostics;

/// <summary>Wall-clock timing of a short operation repeated a few times, summarised by the median.</summary>
public static class RepeatedTiming
{
    /// <summary>
    /// Runs <paramref name="timed"/> once untimed (first-touch page faults, JIT), then times it at least
    /// <paramref name="minRepetitions"/> and at most <paramref name="maxRepetitions"/> times, stopping early once
    /// <paramref name="budget"/> of timed work is spent. <paramref name="beforeEach"/> runs untimed before every
    /// repetition. Returns the median in seconds: one preempted repetition on a shared machine does not move it.
    /// </summary>
    public static double MedianSeconds(Action timed, Action? beforeEach, int minRepetitions, int maxRepetitions, TimeSpan budget)
    {
        ArgumentNullException.ThrowIfNull(timed);
        ArgumentOutOfRangeException.ThrowIfLessThan(minRepetitions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRepetitions, minRepetitions);
        timed();
        var samples = new List<double>(maxRepetitions);
        var spent = 0.0;
        while (samples.Count < maxRepetitions && (samples.Count < minRepetitions || spent < budget.TotalSeconds))
        {
            beforeEach?.Invoke();
            var start = Stopwatch.GetTimestamp();
            timed();
            var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            samples.Add(seconds);
            spent += seconds;
        }
        return Median(samples);
    }

    /// <summary>The middle value (the mean of the two middle values for an even count).</summary>
    public static double Median(IReadOnlyCollection<double> samples)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0)
            throw new ArgumentException("no samples", nameof(samples));
        var sorted = samples.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
