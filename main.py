"""Entry point: `python main.py {fit,validate,test,predict} --config configs/<model>_<corpus>.yaml`."""

from suite.cli import main

if __name__ == "__main__":
    main()
