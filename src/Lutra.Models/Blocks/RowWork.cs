using Lutra.Core.Threading;

namespace Lutra.Models.Blocks;

/// <summary>
/// The per-token steps between matmuls (RMSNorm, SwiGLU, RoPE + KV store) over a batch, split by token rows over
/// the compute pool. Rows are independent, so the result does not depend on the thread count. A reused object:
/// dispatch allocates nothing. Batches below <see cref="MinParallelRows"/> run on the calling thread.
/// </summary>
public sealed class RowWork(ComputePool pool) : IComputeWork
{
    /// <summary>Fewer rows than this are not worth waking the other threads for.</summary>
    public const int MinParallelRows = 4;

    private enum Step { RmsNorm, SwiGlu, RopeStore }

    private Step _step;
    private int _rows;
    private float[] _a = [], _b = [], _c = [];
    private int _width;
    private float _eps;
    // RoPE + store
    private Rope? _rope;
    private KvCache? _cache;
    private int _layer, _startPosition, _qDim, _kvDim, _headDim, _pairs;
    private float[] _cos = [], _sin = [];

    public ComputePool Pool { get; } = pool;

    /// <summary>y[t] = RMSNorm(x[t]) ⊙ weight for rows t &lt; <paramref name="rows"/> of <paramref name="width"/> values.</summary>
    public void RmsNormRows(float[] x, float[] weight, float eps, float[] y, int rows, int width)
    {
        _step = Step.RmsNorm;
        (_a, _b, _c, _eps, _width) = (x, weight, y, eps, width);
        Dispatch(rows);
    }

    /// <summary>gate ← silu(gate) ⊙ up over <paramref name="rows"/> rows of <paramref name="width"/> values.</summary>
    public void SwiGluRows(float[] gate, float[] up, int rows, int width)
    {
        _step = Step.SwiGlu;
        (_a, _b, _width) = (gate, up, width);
        Dispatch(rows);
    }

    /// <summary>Rotates every row's Q and K with its precomputed angles, then stores K and V at their positions.</summary>
    internal void RopeAndStoreRows(Rope rope, float[] q, float[] k, float[] v, float[] cos, float[] sin, KvCache cache, int layer,
        int startPosition, int rows, int qDim, int kvDim, int headDim)
    {
        _step = Step.RopeStore;
        (_rope, _a, _b, _c, _cos, _sin, _cache, _layer, _startPosition) = (rope, q, k, v, cos, sin, cache, layer, startPosition);
        (_qDim, _kvDim, _headDim, _pairs) = (qDim, kvDim, headDim, rope.PairCount);
        Dispatch(rows);
    }

    private void Dispatch(int rows)
    {
        _rows = rows;
        try
        {
            if (Pool.ThreadCount == 1 || rows < MinParallelRows)
                Execute(0, 1);
            else
                Pool.Run(this);
        }
        finally
        {
            _a = _b = _c = _cos = _sin = [];
            _rope = null;
            _cache = null;
        }
    }

    public void Execute(int threadIndex, int threadCount)
    {
        var (start, end) = ComputePool.Partition(_rows, threadIndex, threadCount);
        for (var t = start; t < end; t++)
        {
            switch (_step)
            {
                case Step.RmsNorm:
                    RmsNorm.Apply(_a.AsSpan(t * _width, _width), _b, _eps, _c.AsSpan(t * _width, _width));
                    break;
                case Step.SwiGlu:
                    SwiGlu.Apply(_a.AsSpan(t * _width, _width), _b.AsSpan(t * _width, _width));
                    break;
                default:
                    var cos = _cos.AsSpan(t * _pairs, _pairs);
                    var sin = _sin.AsSpan(t * _pairs, _pairs);
                    var k = _b.AsSpan(t * _kvDim, _kvDim);
                    _rope!.Rotate(_a.AsSpan(t * _qDim, _qDim), _headDim, cos, sin);
                    _rope.Rotate(k, _headDim, cos, sin);
                    _cache!.Store(_layer, _startPosition + t, k, _c.AsSpan(t * _kvDim, _kvDim));
                    break;
            }
        }
    }
}
