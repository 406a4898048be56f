"""The paper's PPO agent (gymnasium environment + stable-baselines3) and the TRL-trained rewriter."""
