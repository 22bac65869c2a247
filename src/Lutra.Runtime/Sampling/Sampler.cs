namespace Lutra.Runtime.Sampling;

/// <summary>
/// Picks the next token from logits with llama.cpp's sampler chain (see <see cref="SamplerOptions"/>). All buffers
/// are allocated once; <see cref="Sample"/> and <see cref="Accept"/> allocate nothing.
/// </summary>
public sealed class Sampler
{
    private readonly SamplerOptions _options;
    private readonly float[] _logits;   // [n_vocab] working copy
    private readonly int[] _ids;        // candidate ids, best first after selection
    private readonly float[] _keys;     // sort keys (negated logits) / probabilities
    private readonly int[] _counts;     // [n_vocab] occurrences in the penalty window (zero between calls)
    private readonly int[] _history;    // ring buffer of the last PenaltyLastN accepted tokens
    private int _historyStart, _historyCount;
    private readonly Random _random;

    public Sampler(int vocabSize, SamplerOptions options, int contextSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        ArgumentNullException.ThrowIfNull(options);
        if (float.IsNaN(options.Temperature) || options.TopP is < 0 or > 1 || options.MinP is < 0 or > 1 || options.RepeatPenalty <= 0)
            throw new ArgumentException("sampling options out of range: temperature must be a number, top-p and min-p in [0, 1], repeat penalty > 0");
        if (options.PenaltyLastN < -1)
            throw new ArgumentException("penalty window must be -1 (whole context), 0 (off) or positive");
        _options = options;
        _logits = new float[vocabSize];
        _ids = new int[vocabSize];
        _keys = new float[vocabSize];
        _counts = new int[vocabSize];
        _history = new int[options.PenaltyLastN == -1 ? contextSize : options.PenaltyLastN];
        _random = options.Seed is int seed ? new Random(seed) : new Random();
    }

    public SamplerOptions Options => _options;

    /// <summary>Records a token (prompt or generated) for the repetition penalties.</summary>
    public void Accept(int tokenId)
    {
        if (_history.Length == 0)
            return;
        if (_historyCount < _history.Length)
        {
            _history[(_historyStart + _historyCount) % _history.Length] = tokenId;
            _historyCount++;
        }
        else
        {
            _history[_historyStart] = tokenId;
            _historyStart = (_historyStart + 1) % _history.Length;
        }
    }

    public void Reset() => _historyStart = _historyCount = 0;

    public int Sample(ReadOnlySpan<float> logits)
    {
        var n = _logits.Length;
        if (logits.Length != n)
            throw new ArgumentException($"expected {n} logits, got {logits.Length}", nameof(logits));
        logits.CopyTo(_logits);
        ApplyPenalties();
        if (_options.IsGreedy)
            return ArgMax(_logits);

        var count = SelectTopK(_options.TopK > 0 ? Math.Min(_options.TopK, n) : n);
        if (_options.TopP < 1f)
            count = TopP(count, _options.TopP);
        if (_options.MinP > 0f)
            count = MinP(count, _options.MinP);
        return Draw(count, _options.Temperature);
    }

    private void ApplyPenalties()
    {
        var o = _options;
        if (_historyCount == 0 || (o.RepeatPenalty == 1f && o.FrequencyPenalty == 0f && o.PresencePenalty == 0f))
            return;
        for (var i = 0; i < _historyCount; i++)
            _counts[History(i)]++;
        for (var i = 0; i < _historyCount; i++)
        {
            var id = History(i);
            var c = _counts[id];
            if (c == 0)
                continue; // already penalised
            _counts[id] = 0;
            ref var l = ref _logits[id];
            l = l <= 0 ? l * o.RepeatPenalty : l / o.RepeatPenalty;
            l -= c * o.FrequencyPenalty + o.PresencePenalty;
        }
    }

    private int History(int i) => _history[(_historyStart + i) % _history.Length];

    /// <summary>Puts the k best ids, best first, in _ids[0..k).</summary>
    private int SelectTopK(int k)
    {
        var n = _logits.Length;
        if (k < n)
        {
            // Min-heap of the k best seen so far, rooted at the worst of them.
            for (var i = 0; i < n; i++)
            {
                if (i < k)
                {
                    _ids[i] = i;
                    SiftUp(i);
                }
                else if (Better(i, _ids[0]))
                {
                    _ids[0] = i;
                    SiftDown(0, k);
                }
            }
        }
        else
        {
            for (var i = 0; i < n; i++)
                _ids[i] = i;
        }
        for (var i = 0; i < k; i++)
            _keys[i] = -_logits[_ids[i]];
        _keys.AsSpan(0, k).Sort(_ids.AsSpan(0, k));
        return k;
    }

    // Higher logit is better; on equal logits the lower id wins (like llama.cpp's greedy tie rule).
    private bool Better(int a, int b) => _logits[a] > _logits[b] || (_logits[a] == _logits[b] && a < b);

    private void SiftUp(int i)
    {
        while (i > 0)
        {
            var parent = (i - 1) / 2;
            if (!Better(_ids[parent], _ids[i]))
                break;
            (_ids[parent], _ids[i]) = (_ids[i], _ids[parent]);
            i = parent;
        }
    }

    private void SiftDown(int i, int size)
    {
        while (true)
        {
            var worst = i;
            var l = 2 * i + 1;
            var r = l + 1;
            if (l < size && Better(_ids[worst], _ids[l]))
                worst = l;
            if (r < size && Better(_ids[worst], _ids[r]))
                worst = r;
            if (worst == i)
                return;
            (_ids[worst], _ids[i]) = (_ids[i], _ids[worst]);
            i = worst;
        }
    }

    private int TopP(int count, float p)
    {
        var max = _logits[_ids[0]];
        var sum = 0.0;
        for (var i = 0; i < count; i++)
            sum += Math.Exp(_logits[_ids[i]] - max);
        var cumulative = 0.0;
        for (var i = 0; i < count; i++)
        {
            cumulative += Math.Exp(_logits[_ids[i]] - max) / sum;
            if (cumulative >= p)
                return i + 1;
        }
        return count;
    }

    private int MinP(int count, float minP)
    {
        var minLogit = _logits[_ids[0]] + MathF.Log(minP);
        var keep = 1;
        while (keep < count && _logits[_ids[keep]] >= minLogit)
            keep++;
        return keep;
    }

    private int Draw(int count, float temperature)
    {
        var max = _logits[_ids[0]] / temperature;
        var sum = 0.0;
        for (var i = 0; i < count; i++)
        {
            var e = (float)Math.Exp(_logits[_ids[i]] / temperature - max);
            _keys[i] = e;
            sum += e;
        }
        var r = _random.NextDouble() * sum;
        for (var i = 0; i < count; i++)
        {
            r -= _keys[i];
            if (r < 0)
                return _ids[i];
        }
        return _ids[count - 1];
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++)
        {
            if (v[i] > v[best])
                best = i;
        }
        return best;
    }
}
