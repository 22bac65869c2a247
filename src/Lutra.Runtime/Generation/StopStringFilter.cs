namespace Lutra.Runtime.Generation;

/// <summary>
/// Streams generated text while watching for stop strings: text that could still be the start of a stop string
/// is held back until it is known not to be one; a match ends the text just before the stop string.
/// </summary>
public sealed class StopStringFilter(IReadOnlyList<string> stopStrings)
{
    private readonly string[] _stops = stopStrings.Where(s => s.Length > 0).ToArray();
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds generated text; returns what can be emitted now.</summary>
    public string Push(string text)
    {
        if (Stopped)
            return "";
        if (_stops.Length == 0)
            return text;
        _pending += text;
        var cut = -1;
        foreach (var s in _stops)
        {
            var at = _pending.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
                cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            var emit = _pending[..cut];
            _pending = "";
            return emit;
        }
        var hold = 0;
        foreach (var s in _stops)
            hold = Math.Max(hold, LongestSuffixThatPrefixes(_pending, s));
        var ready = _pending[..^hold];
        _pending = _pending[^hold..];
        return ready;
    }

    /// <summary>Held-back text at the end of generation (it did not complete a stop string).</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    private static int LongestSuffixThatPrefixes(string text, string stop)
    {
        for (var len = Math.Min(text.Length, stop.Length - 1); len > 0; len--)
        {
            if (text.AsSpan(text.Length - len).SequenceEqual(stop.AsSpan(0, len)))
                return len;
        }
        return 0;
    }
}
